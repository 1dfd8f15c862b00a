"""A PostgreSQL table of documents: `doc_id, shard, content` (+ optional `updated_at`, `metadata`).

Cheap by construction, so it can poll a large application table:
- change tokens, one `GROUP BY shard` over ids and update times: count, newest `updated_at`
  and a sum of `hashtextextended(doc_id || updated_at)` (catches edits of old rows, deletes
  and inserts that keep the count); content is hashed only when the table has no `updated_at`;
- a listing reads `doc_id, updated_at` of the shard and computes `md5(content)` in the
  database only for rows whose `updated_at` moved since the last listing (kept in the listing
  cache); rows never travel with their content except in `read()` of changed docs;
- deletions only from a complete listing (any query error fails the shard, deleting nothing).
`updated_at` must move on every edit (e.g. a trigger); without the column every listing hashes
all content in the database (still without sending it).

Driver: psycopg2 (binary wheel), because dagster-postgres already installs it in every
deployment that uses PostgreSQL; psycopg 3 would be a second driver for the same server.
The DSN is a secret: it is never logged or put in error messages.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone

import pyarrow as pa

from freshness.errors import ConfigError, SourceError
from freshness.sources.base import (
    DOCS_SCHEMA,
    LISTING_SCHEMA,
    Discovery,
    Listing,
    ListingCache,
    Skip,
    Source,
)
from freshness.sources.folder import DEFAULT_MAX_DOC_BYTES
from freshness.util.shard_names import shard_name_problem
from freshness.util.timeutil import utc_now

CACHE_SCHEMA = pa.schema([("doc_id", pa.string()), ("token", pa.string()),
                          ("doc_hash", pa.string()), ("reason", pa.string())])
HASH_BATCH = 5_000  # ids per md5 query


def _psycopg2():
    try:
        import psycopg2
        import psycopg2.sql
    except ImportError as exc:
        raise ConfigError("the postgres source needs psycopg2: pip install "
                          "'retrieval-freshness[postgres]'") from exc
    return psycopg2


class PostgresSource(Source):
    """Documents in table `table` (optionally `schema.table`) of the database at `dsn`."""

    def __init__(self, dsn: str, table: str, max_doc_bytes: int = DEFAULT_MAX_DOC_BYTES,
                 connect_timeout_s: int = 10) -> None:
        self._pg = _psycopg2()
        self._dsn, self.table = dsn, table
        self.max_doc_bytes = max_doc_bytes
        self.connect_timeout_s = connect_timeout_s
        self.name = f"postgres:{table}"
        self._lock = threading.RLock()
        self._con = None
        self._cache: ListingCache | None = None
        self._cache_id = f"{self.name}|{max_doc_bytes}"
        self._memo: dict[str, dict[str, tuple]] = {}
        self._duplicates: dict[str, int] | None = None
        self.columns = self._columns()

    @classmethod
    def from_settings(cls, settings) -> PostgresSource:
        """`--source postgres --dsn DSN --table T` (FRESHNESS_SOURCE_DSN, _TABLE)."""
        if not (settings.source_dsn and settings.source_table):
            raise ConfigError("source_kind=postgres needs FRESHNESS_SOURCE_DSN (--dsn, e.g. "
                              "postgresql://user@host/db; password from PGPASSWORD or the "
                              "DSN) and FRESHNESS_SOURCE_TABLE (--table)")
        return cls(settings.source_dsn, settings.source_table, settings.max_doc_bytes)

    def __repr__(self) -> str:  # never show the DSN
        return f"PostgresSource(table={self.table!r})"

    def use_listing_cache(self, cache: ListingCache | None) -> None:
        self._cache = cache

    # -- connection and queries ------------------------------------------------------------

    def _connect(self):
        if self._con is None or self._con.closed:
            try:
                self._con = self._pg.connect(self._dsn, connect_timeout=self.connect_timeout_s,
                                             application_name="retrieval-freshness")
            except self._pg.Error as exc:
                raise SourceError(f"cannot connect to the postgres source ({_first_line(exc)})"
                                  ": check FRESHNESS_SOURCE_DSN and that the server is up") \
                    from None
            self._con.autocommit = True
            with self._con.cursor() as cur:
                cur.execute("SET TIME ZONE 'UTC'")
        return self._con

    def _query(self, query, params=()) -> list[tuple]:
        with self._lock:
            con = self._connect()
            try:
                with con.cursor() as cur:
                    cur.execute(query, params)
                    return cur.fetchall()
            except self._pg.Error as exc:
                if con.closed:
                    self._con = None
                raise SourceError(f"postgres source {self.table}: {_first_line(exc)}") from None

    def _ident(self):
        parts = self.table.split(".")
        return self._pg.sql.Identifier(*parts)

    def _columns(self) -> set[str]:
        parts = self.table.split(".")
        schema, name = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
        rows = self._query(
            """SELECT column_name FROM information_schema.columns
               WHERE table_name = %s AND (%s::text IS NULL AND table_schema = ANY(
                     current_schemas(false)) OR table_schema = %s)""", (name, schema, schema))
        columns = {r[0] for r in rows}
        if not columns:
            raise SourceError(f"postgres table {self.table!r} not found: pass --table "
                              "(FRESHNESS_SOURCE_TABLE), schema-qualified if needed")
        missing = [c for c in ("doc_id", "shard", "content") if c not in columns]
        if missing:
            raise SourceError(f"postgres table {self.table} lacks column(s) {missing}: it needs "
                              "doc_id, shard, content, optionally updated_at and metadata")
        return columns

    def _sql(self, text: str):
        return self._pg.sql.SQL(text).format(table=self._ident())

    @property
    def _has_updated(self) -> bool:
        return "updated_at" in self.columns

    # -- the Source methods ----------------------------------------------------------------

    def refresh(self) -> None:
        """A new scan: recount duplicate ids (the table may have changed)."""
        self._duplicates = None

    def discover(self) -> Discovery:
        rows = self._query(self._sql("SELECT shard FROM {table} GROUP BY shard ORDER BY shard"))
        shards, skips = [], []
        for (shard,) in rows:
            problem = shard_name_problem(shard)
            if problem:
                skips.append(Skip(doc_id="*", shard=None, reason=problem))
            else:
                shards.append(shard)
        return Discovery(shards, skips)

    def change_tokens(self) -> dict[str, str]:
        """Per shard: count, newest updated_at and a sum of per-row hashes of id and update
        time (of id and content when there is no updated_at)."""
        row_hash = ("hashtextextended(doc_id::text || '|' || coalesce(updated_at::text, ''), 0)"
                    if self._has_updated else
                    "hashtextextended(doc_id::text || '|' || coalesce(content, ''), 0)")
        newest = "max(updated_at)::text" if self._has_updated else "NULL"
        rows = self._query(self._sql(
            f"SELECT shard, count(*), {newest}, sum({row_hash})::text FROM {{table}} "
            "GROUP BY shard"))
        return {s: f"{n}-{t}-{h}" for s, n, t, h in rows if shard_name_problem(s) is None}

    def _duplicate_ids(self) -> dict[str, int]:
        """Ids on more than one row (whole table, once per scan): refused until made unique."""
        if self._duplicates is None:
            rows = self._query(self._sql(
                "SELECT doc_id, count(*) FROM {table} WHERE doc_id IS NOT NULL "
                "GROUP BY doc_id HAVING count(*) > 1"))
            self._duplicates = {str(d): n for d, n in rows}
        return self._duplicates

    def _previous(self, shard: str) -> dict[str, tuple]:
        if shard in self._memo:
            return self._memo[shard]
        table = self._cache.load(self._cache_id, shard) if self._cache else None
        if table is None or table.schema.names != CACHE_SCHEMA.names:
            return {}
        return {r["doc_id"]: (r["token"], r["doc_hash"], r["reason"]) for r in table.to_pylist()}

    def _hash_rows(self, shard: str, doc_ids: list[str]) -> dict[str, tuple[str | None, str]]:
        """doc_id -> (md5 or None, problem) computed in the database, content never sent."""
        out: dict[str, tuple[str | None, str]] = {}
        for start in range(0, len(doc_ids), HASH_BATCH):
            batch = doc_ids[start:start + HASH_BATCH]
            rows = self._query(self._sql(
                """SELECT doc_id::text, md5(content), octet_length(content),
                          content IS NULL OR content ~ '^\\s*$'
                   FROM {table} WHERE shard = %s AND doc_id::text = ANY(%s)"""), (shard, batch))
            for doc_id, digest, size, empty in rows:
                if empty:
                    out[doc_id] = (None, "empty document: nothing to embed")
                elif size > self.max_doc_bytes:
                    out[doc_id] = (None, f"document is {size} bytes, over max_doc_bytes="
                                         f"{self.max_doc_bytes}: split it or raise "
                                         "FRESHNESS_MAX_DOC_BYTES")
                else:
                    out[doc_id] = (digest, "")
        return out

    def listing(self, shard: str) -> Listing:
        scanned_at = utc_now()
        updated = "updated_at" if self._has_updated else "NULL::timestamptz"
        rows = self._query(self._sql(
            f"SELECT doc_id::text, {updated} FROM {{table}} WHERE shard = %s"), (shard,))
        duplicates = self._duplicate_ids()
        previous, current = self._previous(shard), {}
        notes: Counter = Counter()
        skips: list[Skip] = []
        tokens: dict[str, tuple[str, datetime | None]] = {}
        for doc_id, when in rows:
            if doc_id is None or not doc_id.strip():
                skips.append(Skip(str(doc_id), shard, "row has no doc_id: every row needs a "
                                  "unique doc_id"))
            elif doc_id in duplicates:
                skips.append(Skip(doc_id, shard, f"duplicate doc_id ({duplicates[doc_id]} rows): "
                                  "make doc_id unique; the indexed version is kept until it is"))
            else:
                tokens[doc_id] = (_as_utc(when).isoformat() if when else "", _as_utc(when))
        stale = sorted(d for d, (token, _) in tokens.items()
                       if not token or previous.get(d, ("",))[0] != token)
        hashed = self._hash_rows(shard, stale) if stale else {}
        notes["docs_hashed"] += len(stale)
        notes["docs_hash_reused"] += len(tokens) - len(stale)
        ids, hashes, times = [], [], []
        for doc_id, (token, when) in sorted(tokens.items()):
            if doc_id in hashed:
                digest, reason = hashed[doc_id]
            elif doc_id in stale:
                continue  # deleted between the two queries: the next scan sees it
            else:
                _, digest, reason = previous[doc_id]
            current[doc_id] = (token, digest, reason or None)
            if reason:
                skips.append(Skip(doc_id, shard, reason))
                continue
            if when is None:
                notes["missing_updated_at_set_to_scan_time"] += 1
            elif when > scanned_at:
                notes["future_timestamp_clamped"] += 1
            ids.append(doc_id)
            hashes.append(digest)
            times.append(min(when or scanned_at, scanned_at))
        self._remember(shard, previous, current)
        docs = pa.table({"doc_id": pa.array(ids, pa.string()),
                         "doc_hash": pa.array(hashes, pa.string()),
                         "updated_at": pa.array(times, LISTING_SCHEMA.field("updated_at").type)})
        return Listing(shard, docs, scanned_at, complete=True, skips=skips, notes=notes)

    def _remember(self, shard: str, previous: dict, current: dict) -> None:
        self._memo[shard] = current
        if self._cache is not None and current != previous:
            rows = [{"doc_id": k, "token": v[0], "doc_hash": v[1], "reason": v[2]}
                    for k, v in sorted(current.items())]
            self._cache.save(self._cache_id, shard, pa.Table.from_pylist(rows, CACHE_SCHEMA))

    def read(self, shard: str, doc_ids: Sequence[str]) -> pa.Table:
        wanted = [d for d in doc_ids if d not in self._duplicate_ids()]
        updated = "updated_at" if self._has_updated else "NULL::timestamptz"
        metadata = "metadata::text" if "metadata" in self.columns else "NULL::text"
        rows = self._query(self._sql(
            f"SELECT doc_id::text, content, {updated}, {metadata} FROM {{table}} "
            "WHERE shard = %s AND doc_id::text = ANY(%s)"), (shard, wanted)) if wanted else []
        now = utc_now()
        out: dict[str, list] = {name: [] for name in DOCS_SCHEMA.names}
        for doc_id, content, when, meta in rows:
            if content is None or not content.strip() or \
                    len(content.encode()) > self.max_doc_bytes:
                continue
            out["doc_id"].append(doc_id)
            out["content"].append(content)
            out["updated_at"].append(min(_as_utc(when) or now, now))
            out["metadata"].append(meta if meta is not None else json.dumps({"table":
                                                                             self.table}))
        return pa.table(out, DOCS_SCHEMA)


def _as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None \
        else value.astimezone(timezone.utc)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
