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

import io
import json
import threading
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

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
from freshness.sources.files import DEFAULT_MAX_DOC_BYTES, RACY_WINDOW_S
from freshness.util.shard_names import shard_name_problem
from freshness.util.timeutil import utc_now

CACHE_SCHEMA = pa.schema([("doc_id", pa.string()), ("token", pa.int64()),  # updated_at, µs
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
                 connect_timeout_s: int = 10, racy_window_s: float = RACY_WINDOW_S) -> None:
        self._pg = _psycopg2()
        self._dsn, self.table = dsn, table
        self.max_doc_bytes = max_doc_bytes
        self.connect_timeout_s = connect_timeout_s
        self.racy_window_s = racy_window_s
        self.name = f"postgres:{table}"
        self._lock = threading.RLock()
        self._con = None
        self._cache: ListingCache | None = None
        self._cache_id = f"{self.name}|{max_doc_bytes}"
        self._memo: dict[str, pa.Table] = {}
        self._duplicates: dict[str, int] | None = None
        self._unique: bool | None = None
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

    def _copy(self, query, params, schema: pa.Schema) -> pa.Table:
        """A query's rows as Arrow through COPY ... TO STDOUT (CSV): no Python object per row.
        NULL is an unquoted empty field, '' a quoted one."""
        with self._lock:
            con = self._connect()
            try:
                with con.cursor() as cur:
                    sql = cur.mogrify(query, params).decode()
                    buffer = io.BytesIO()
                    cur.copy_expert(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)", buffer)
            except self._pg.Error as exc:
                if con.closed:
                    self._con = None
                raise SourceError(f"postgres source {self.table}: {_first_line(exc)}") from None
        if not buffer.tell():
            return schema.empty_table()
        buffer.seek(0)
        return pacsv.read_csv(
            buffer, read_options=pacsv.ReadOptions(column_names=schema.names),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=schema, strings_can_be_null=True,
                quoted_strings_can_be_null=False)).cast(schema)

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
        return Discovery.of_names(shard for (shard,) in rows)

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

    def _ids_unique(self) -> bool:
        """True when a unique index (or primary key) on doc_id alone rules duplicates out."""
        if self._unique is None:
            with self._lock:
                regclass = self._ident().as_string(self._connect())
            rows = self._query(
                """SELECT 1 FROM pg_index i
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                   WHERE i.indrelid = %s::regclass AND i.indisunique AND i.indnkeyatts = 1
                     AND i.indpred IS NULL AND a.attname = 'doc_id'""", (regclass,))
            self._unique = bool(rows)
        return self._unique

    def _duplicate_ids(self) -> dict[str, int]:
        """Ids on more than one row (whole table, once per scan): refused until made unique.
        A unique index on doc_id makes this free."""
        if self._duplicates is None and self._ids_unique():
            self._duplicates = {}
        if self._duplicates is None:
            rows = self._query(self._sql(
                "SELECT doc_id, count(*) FROM {table} WHERE doc_id IS NOT NULL "
                "GROUP BY doc_id HAVING count(*) > 1"))
            self._duplicates = {str(d): n for d, n in rows}
        return self._duplicates

    def _previous(self, shard: str) -> pa.Table | None:
        if shard in self._memo:
            return self._memo[shard]
        table = self._cache.load(self._cache_id, shard) if self._cache else None
        if table is None or table.schema != CACHE_SCHEMA:
            return None
        return table

    def _hash_rows(self, shard: str, doc_ids: list[str]) -> pa.Table:
        """(doc_id, doc_hash, reason) computed in the database; the content is never sent."""
        out: dict[str, list] = {"doc_id": [], "doc_hash": [], "reason": []}
        for start in range(0, len(doc_ids), HASH_BATCH):
            batch = doc_ids[start:start + HASH_BATCH]
            rows = self._query(self._sql(
                """SELECT doc_id::text, md5(content), octet_length(content),
                          content IS NULL OR content ~ '^[[:space:]]*$'
                   FROM {table} WHERE shard = %s AND doc_id::text = ANY(%s)"""), (shard, batch))
            for doc_id, digest, size, empty in rows:
                reason = None
                if empty:
                    reason = "empty document: nothing to embed"
                elif size > self.max_doc_bytes:
                    reason = (f"document is {size} bytes, over max_doc_bytes="
                              f"{self.max_doc_bytes}: split it or raise FRESHNESS_MAX_DOC_BYTES")
                out["doc_id"].append(doc_id)
                out["doc_hash"].append(None if reason else digest)
                out["reason"].append(reason)
        return pa.table(out, pa.schema([CACHE_SCHEMA.field(n) for n in out]))

    def listing(self, shard: str) -> Listing:
        """Ids and update times of the shard (one index scan); md5 in the database only for
        rows whose update time moved since the cached listing. Arrow joins, no per-row Python."""
        scanned_at = utc_now()
        micros = ("(extract(epoch FROM updated_at) * 1000000)::bigint" if self._has_updated
                  else "NULL::bigint")
        listed = self._copy(self._sql(
            f"SELECT doc_id::text, {micros} FROM {{table}} WHERE shard = %s"), (shard,),
            pa.schema([("doc_id", pa.string()), ("token", pa.int64())]))
        skips = self._refused(shard, listed)
        good = pc.and_(pc.invert(pc.is_in(listed["doc_id"], pa.array(
            sorted(self._duplicate_ids()), pa.string()))), pc.fill_null(pc.greater(
                pc.utf8_length(pc.utf8_trim_whitespace(listed["doc_id"])), 0), False))
        listed = listed.filter(good)
        previous = self._previous(shard)
        if previous is not None and previous.num_rows:
            joined = listed.join(previous.rename_columns(
                ["doc_id", "old_token", "doc_hash", "reason"]), "doc_id", join_type="left outer")
            same = pc.fill_null(pc.equal(joined["token"], joined["old_token"]), False)
            kept = joined.filter(same).select(["doc_id", "token", "doc_hash", "reason"])
            stale = joined.filter(pc.invert(same)).select(["doc_id", "token"])
        else:
            kept, stale = CACHE_SCHEMA.empty_table(), listed
        hashed = self._hash_rows(shard, stale["doc_id"].to_pylist()) if stale.num_rows else None
        current = kept.cast(CACHE_SCHEMA)
        if hashed is not None:  # rows deleted between the two queries drop out of the join
            fresh = stale.join(hashed, "doc_id", join_type="inner")
            current = pa.concat_tables([current, fresh.select(CACHE_SCHEMA.names)
                                        .cast(CACHE_SCHEMA)])
        current = current.sort_by("doc_id")
        notes: Counter = Counter(docs_hashed=stale.num_rows, docs_hash_reused=kept.num_rows)
        # An update time within the racy window may be shared by a later edit in the same
        # tick (second-precision columns, clock skew): such rows are hashed again next time.
        racy_after = int((scanned_at.timestamp() - self.racy_window_s) * 1e6)
        racy = pc.fill_null(pc.greater_equal(current["token"], racy_after), False)
        self._remember(shard, previous, current.set_column(
            1, "token", pc.if_else(racy, pa.scalar(None, pa.int64()), current["token"])))
        refused = current.filter(pc.is_valid(current["reason"]))
        skips += [Skip(r["doc_id"], shard, r["reason"]) for r in refused.to_pylist()]
        good = current.filter(pc.is_null(current["reason"]))
        scan = pa.scalar(scanned_at, LISTING_SCHEMA.field("updated_at").type)
        when = good["token"].cast(pa.timestamp("us", tz="UTC"))
        if when.null_count:
            notes["missing_updated_at_set_to_scan_time"] = when.null_count
        future = int(pc.sum(pc.greater(when, scan)).as_py() or 0)
        if future:
            notes["future_timestamp_clamped"] = future
        when = pc.fill_null(when, scan)
        when = pc.if_else(pc.greater(when, scan), scan, when)
        docs = pa.table({"doc_id": good["doc_id"], "doc_hash": good["doc_hash"],
                         "updated_at": when}).cast(LISTING_SCHEMA)
        return Listing(shard, docs, scanned_at, complete=True, skips=skips, notes=notes)

    def _refused(self, shard: str, listed: pa.Table) -> list[Skip]:
        """Rows refused by id: missing id, or an id on several rows (whole table)."""
        duplicates = self._duplicate_ids()
        copies = listed["doc_id"].filter(pc.is_in(listed["doc_id"], pa.array(
            sorted(duplicates), pa.string()))).to_pylist() if duplicates else []
        skips = [Skip(d, shard, f"duplicate doc_id ({duplicates[d]} rows): make doc_id unique; "
                      "the indexed version is kept until it is") for d in copies]
        missing = pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(
            listed["doc_id"])), 0), True)
        skips += [Skip(str(d), shard, "row has no doc_id: every row needs a unique doc_id")
                  for d in listed["doc_id"].filter(missing).to_pylist()]
        return skips

    def _remember(self, shard: str, previous: pa.Table | None, current: pa.Table) -> None:
        self._memo[shard] = current
        if self._cache is not None and (previous is None or not previous.equals(current)):
            self._cache.save(self._cache_id, shard, current)

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
