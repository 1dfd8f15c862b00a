"""A table of documents `(doc_id, shard, content, updated_at, metadata…)` read with DuckDB.

Works over a Parquet file or glob, a DuckDB database table, or any DuckDB SQL that yields those
columns (the replay source builds on it). Validation is SQL, so it scales with the table.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime
from collections.abc import Sequence
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
                columns = [r[0] for r in self._con.sql("DESCRIBE source_raw").fetchall()]
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
            meta = ", ".join(f"{_quote(c)}: \"{c}\"" for c in extra)
            metadata_sql = f"to_json({{{meta}}})::VARCHAR" if extra else "NULL::VARCHAR"
            if "metadata" in columns:
                metadata_sql = "metadata::VARCHAR"
            updated_sql = ("try_cast(updated_at AS TIMESTAMPTZ)" if "updated_at" in columns
                           else "NULL::TIMESTAMPTZ")
            self._con.sql(
                f"""CREATE OR REPLACE TEMP VIEW source_docs AS
                SELECT doc_id::VARCHAR AS doc_id, shard::VARCHAR AS shard,
                       content::VARCHAR AS content,
                       {updated_sql} AS updated_at,
                       {metadata_sql} AS metadata
                FROM source_raw"""
            )

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

    def listing(self, shard: str) -> Listing:
        scanned_at = self.now()
        checked = self._query(
            """
            SELECT doc_id, md5(content) AS doc_hash, updated_at,
                   count(*) OVER (PARTITION BY doc_id) AS copies,
                   CASE
                     WHEN doc_id IS NULL OR trim(doc_id) = '' THEN 'missing doc_id'
                     WHEN content IS NULL OR trim(content) = '' THEN 'empty'
                     WHEN strlen(content) > ? THEN 'too_large'
                   END AS problem,
                   strlen(content) AS size
            FROM source_docs WHERE shard = ?
            """,
            [self.max_doc_bytes, shard],
        ).to_pylist()
        ids, hashes, times, skips = [], [], [], []
        notes: Counter = Counter()
        for row in checked:
            reason = self._problem_text(row)
            if reason:
                skips.append(Skip(str(row["doc_id"]), shard, reason))
                continue
            updated = row["updated_at"]
            if updated is None:
                notes["missing_updated_at_set_to_scan_time"] += 1
                updated = scanned_at
            elif updated > scanned_at:
                notes["future_timestamp_clamped"] += 1
                updated = scanned_at
            ids.append(row["doc_id"])
            hashes.append(row["doc_hash"])
            times.append(updated)
        docs = pa.table({"doc_id": ids, "doc_hash": hashes, "updated_at": times}, LISTING_SCHEMA)
        return Listing(shard, docs, scanned_at, complete=True, skips=skips, notes=notes)

    def _problem_text(self, row: dict) -> str | None:
        if row["copies"] > 1 and row["doc_id"] is not None:
            return (
                f"duplicate doc_id ({row['copies']} rows): make doc_id unique per document; "
                "the indexed version is kept until it is"
            )
        problem = row["problem"]
        if problem == "missing doc_id":
            return "row has no doc_id: every row needs a unique doc_id"
        if problem == "empty":
            return "empty document: nothing to embed"
        if problem == "too_large":
            return (
                f"document is {row['size']} characters, over max_doc_bytes={self.max_doc_bytes}: "
                "split it or raise FRESHNESS_MAX_DOC_BYTES"
            )
        return None

    def read(self, shard: str, doc_ids: Sequence[str]) -> pa.Table:
        wanted = pa.table({"doc_id": pa.array(list(doc_ids), pa.string())})
        with self._lock:
            self._con.register("wanted_ids", wanted)
            try:
                table = self._con.sql(
                    """SELECT d.doc_id, d.content,
                              least(coalesce(d.updated_at, now()), now()) AS updated_at,
                              d.metadata
                       FROM source_docs d JOIN wanted_ids w USING (doc_id)
                       WHERE d.shard = ?
                       QUALIFY count(*) OVER (PARTITION BY d.doc_id) = 1""",
                    params=[shard],
                ).to_arrow_table()
            finally:
                self._con.unregister("wanted_ids")
        return table.cast(DOCS_SCHEMA)
