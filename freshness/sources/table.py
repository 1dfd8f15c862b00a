"""A table of documents `(doc_id, shard, content, updated_at, metadata…)` read with DuckDB.

Works over a Parquet file or glob, a DuckDB database table, or any DuckDB SQL that yields those
columns (the replay source builds on it). Validation is SQL, so it scales with the table.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from freshness.errors import SourceError
from freshness.shard_names import shard_name_problem
from freshness.sources.base import DOCS_SCHEMA, LISTING_SCHEMA, Discovery, Listing, Skip
from freshness.sources.folder import DEFAULT_MAX_DOC_BYTES
from freshness.timeutil import utc_now

REQUIRED_COLUMNS = ("doc_id", "shard", "content")
OPTIONAL_COLUMNS = ("updated_at", "metadata")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class TableSource:
    """Documents from a DuckDB relation; rows are checked, bad ones skipped and counted."""

    def __init__(
        self,
        relation_sql: str,
        name: str,
        max_doc_bytes: int = DEFAULT_MAX_DOC_BYTES,
        con: duckdb.DuckDBPyConnection | None = None,
    ) -> None:
        self.name = name
        self.max_doc_bytes = max_doc_bytes
        self._con = con or duckdb.connect()
        self._con.sql("SET TimeZone = 'UTC'")  # naive timestamps are taken as UTC
        self._lock = threading.Lock()
        self._set_relation(relation_sql)

    @classmethod
    def from_parquet(cls, path: str | Path, **kwargs) -> TableSource:
        """A Parquet file, folder glob or list of files."""
        if "*" not in str(path) and not Path(path).exists():
            raise SourceError(f"table source {str(path)!r} does not exist: pass a Parquet path")
        return cls(f"SELECT * FROM read_parquet({_quote(str(path))})", f"parquet:{path}", **kwargs)

    @classmethod
    def from_duckdb(cls, database: str | Path, table: str, **kwargs) -> TableSource:
        """A table inside a DuckDB database file (opened read-only)."""
        if not Path(database).exists():
            raise SourceError(f"DuckDB database {str(database)!r} does not exist")
        con = duckdb.connect(str(database), read_only=True)
        ident = '"' + table.replace('"', '""') + '"'
        return cls(f"SELECT * FROM {ident}", f"duckdb:{database}:{table}", con=con, **kwargs)

    def _set_relation(self, relation_sql: str) -> None:
        with self._lock:
            try:
                self._con.sql(f"CREATE OR REPLACE TEMP VIEW source_raw AS {relation_sql}")
                types = {r[0]: r[1] for r in self._con.sql("DESCRIBE source_raw").fetchall()}
                columns = list(types)
            except duckdb.Error as exc:
                raise SourceError(f"cannot read table source {self.name}: {exc}") from exc
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise SourceError(
                    f"table source {self.name} lacks column(s) {missing}: it must have "
                    f"{list(REQUIRED_COLUMNS)}, optionally updated_at (extra columns become "
                    "metadata)"
                )
            extra = [c for c in columns if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
            if "not_utf8" in extra or "size" in extra:
                extra = [c for c in extra if c not in ("not_utf8", "size")]
            meta = ", ".join(f"{_quote(c)}: \"{c}\"" for c in extra)
            metadata_sql = f"to_json({{{meta}}})::VARCHAR" if extra else "NULL::VARCHAR"
            if "metadata" in columns:
                metadata_sql = "metadata::VARCHAR"
            updated_sql = ("try_cast(updated_at AS TIMESTAMPTZ)" if "updated_at" in columns
                           else "NULL::TIMESTAMPTZ")
            binary = types.get("content") == "BLOB"  # bytes: decode, refuse what is not UTF-8
            content_sql = "try(decode(content))" if binary else "content::VARCHAR"
            not_utf8_sql = ("(content IS NOT NULL AND try(decode(content)) IS NULL)" if binary
                            else "false")
            self._con.sql(
                f"""CREATE OR REPLACE TEMP VIEW source_docs AS
                SELECT doc_id::VARCHAR AS doc_id, shard::VARCHAR AS shard,
                       {content_sql} AS content, {not_utf8_sql} AS not_utf8,
                       strlen({content_sql}) AS size,
                       {updated_sql} AS updated_at,
                       {metadata_sql} AS metadata
                FROM source_raw"""
            )
            self._copies_ready = False

    def _query(self, sql: str, params: list | None = None) -> pa.Table:
        with self._lock:
            try:
                return self._con.sql(sql, params=params or None).to_arrow_table()
            except duckdb.Error as exc:
                raise SourceError(f"cannot read table source {self.name}: {exc}") from exc

    def discover(self) -> Discovery:
        rows = self._query("SELECT DISTINCT shard FROM source_docs ORDER BY shard").column(0)
        shards, skips = [], []
        for shard in rows.to_pylist():
            problem = shard_name_problem(shard)
            if problem:
                skips.append(Skip(doc_id="*", shard=None, reason=problem))
            else:
                shards.append(shard)
        return Discovery(shards, skips)

    def now(self) -> datetime:
        """The source's clock (the wall clock; a replay uses the replayed time)."""
        return utc_now()

    def change_tokens(self) -> dict[str, str]:
        """Per shard: row count, newest update time and an xor of row hashes (one SQL pass)."""
        rows = self._query(
            """SELECT shard, count(*) AS n, max(updated_at)::VARCHAR AS newest,
                      bit_xor(hash(doc_id, content)) AS digest
               FROM source_docs GROUP BY shard"""
        ).to_pylist()
        return {r["shard"]: f"{r['n']}-{r['newest']}-{r['digest']}" for r in rows
                if shard_name_problem(r["shard"]) is None}

    def _checked_sql(self) -> str:
        """Every row with the reason it cannot be indexed (NULL when it can). Duplicates are
        counted over the whole table, so a doc id in two shards is refused in both."""
        return f"""
            SELECT d.doc_id, d.shard, d.content, d.updated_at, d.size,
              CASE
                WHEN d.doc_id IS NULL OR trim(d.doc_id) = '' THEN
                  'row has no doc_id: every row needs a unique doc_id'
                WHEN c.copies > 1 THEN 'duplicate doc_id (' || c.copies || ' rows' ||
                  CASE WHEN c.shards > 1 THEN ' in ' || c.shards || ' shards' ELSE '' END ||
                  '): make doc_id unique per document; the indexed version is kept until it is'
                WHEN d.not_utf8 THEN 'not UTF-8 text: re-encode it as UTF-8'
                WHEN d.content IS NULL OR regexp_matches(d.content, '^\\s*$') THEN
                  'empty document: nothing to embed'
                WHEN d.size > {int(self.max_doc_bytes)} THEN 'document is ' || d.size ||
                  ' characters, over max_doc_bytes={int(self.max_doc_bytes)}: split it or raise '
                  || 'FRESHNESS_MAX_DOC_BYTES'
              END AS problem
            FROM source_docs d LEFT JOIN doc_copies c USING (doc_id)"""

    def listing(self, shard: str) -> Listing:
        """Valid rows become the listing in SQL; only refused rows are visited in Python."""
        scanned_at = self.now()
        self._ensure_doc_copies()
        sql = f"WITH checked AS ({self._checked_sql()} WHERE d.shard = ?)"
        docs = self._query(
            f"""{sql} SELECT doc_id, md5(content) AS doc_hash,
                   least(coalesce(updated_at, ?::TIMESTAMPTZ), ?::TIMESTAMPTZ) AS updated_at
                FROM checked WHERE problem IS NULL ORDER BY doc_id""",
            [shard, scanned_at, scanned_at]).cast(LISTING_SCHEMA)
        summary = self._query(
            f"""{sql} SELECT count(*) FILTER (WHERE updated_at IS NULL) AS missing,
                   count(*) FILTER (WHERE updated_at > ?::TIMESTAMPTZ) AS future
                FROM checked WHERE problem IS NULL""", [shard, scanned_at]).to_pylist()[0]
        notes: Counter = Counter()
        if summary["missing"]:
            notes["missing_updated_at_set_to_scan_time"] = summary["missing"]
        if summary["future"]:
            notes["future_timestamp_clamped"] = summary["future"]
        refused = self._query(f"{sql} SELECT doc_id, problem FROM checked "
                              "WHERE problem IS NOT NULL", [shard]).to_pylist()
        skips = [Skip(str(r["doc_id"]), shard, r["problem"]) for r in refused]
        return Listing(shard, docs, scanned_at, complete=True, skips=skips, notes=notes)

    def _ensure_doc_copies(self) -> None:
        """Doc ids that occur more than once (computed once per relation)."""
        if self._copies_ready:
            return
        with self._lock:
            self._con.sql(
                """CREATE OR REPLACE TEMP TABLE doc_copies AS
                   SELECT doc_id, count(*) AS copies, count(DISTINCT shard) AS shards
                   FROM source_docs WHERE doc_id IS NOT NULL GROUP BY doc_id
                   HAVING count(*) > 1""")
        self._copies_ready = True

    def read(self, shard: str, doc_ids: Sequence[str]) -> pa.Table:
        wanted = pa.table({"doc_id": pa.array(list(doc_ids), pa.string())})
        self._ensure_doc_copies()
        with self._lock:
            self._con.register("wanted_ids", wanted)
            try:
                table = self._con.sql(
                    """SELECT d.doc_id, d.content,
                              least(coalesce(d.updated_at, now()), now()) AS updated_at,
                              d.metadata
                       FROM source_docs d JOIN wanted_ids w USING (doc_id)
                       WHERE d.shard = ? AND d.doc_id NOT IN (SELECT doc_id FROM doc_copies)""",
                    params=[shard],
                ).to_arrow_table()
            finally:
                self._con.unregister("wanted_ids")
        return table.cast(DOCS_SCHEMA)
