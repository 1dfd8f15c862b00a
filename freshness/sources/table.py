"""A table of documents `(doc_id, shard, content, updated_at, metadata…)` read with DuckDB.

Works over a Parquet file or glob, a DuckDB database table, or any DuckDB SQL that yields those
columns (the replay source builds on it). Validation is SQL, so it scales with the table.
"""

from __future__ import annotations

import glob
import os
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from freshness.errors import ConfigError, SourceError
from freshness.sources.base import DOCS_SCHEMA, LISTING_SCHEMA, Discovery, Listing, Skip, Source
from freshness.sources.files import (
    DEFAULT_MAX_DOC_BYTES,
    RACY_WINDOW_S,
    open_root,
    redact_uri,
)
from freshness.util.shard_names import shard_name_problem
from freshness.util.text import BLANK_RE2
from freshness.util.timeutil import utc_now

REQUIRED_COLUMNS = ("doc_id", "shard", "content")
DEFAULT_MEMORY_LIMIT = "512MB"
OPTIONAL_COLUMNS = ("updated_at", "metadata")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class TableSource(Source):
    """Documents from a DuckDB relation; rows are checked, bad ones skipped and counted."""

    def __init__(
        self,
        relation_sql: str,
        name: str,
        max_doc_bytes: int = DEFAULT_MAX_DOC_BYTES,
        con: duckdb.DuckDBPyConnection | None = None,
        watch: Sequence[str] = (),
        memory_limit: str | None = DEFAULT_MEMORY_LIMIT,
    ) -> None:
        self.name = name
        self.max_doc_bytes = max_doc_bytes
        self._con = con or duckdb.connect()
        self._con.sql("SET TimeZone = 'UTC'")  # naive timestamps are taken as UTC
        self._con.sql("SET preserve_insertion_order = false")  # lets big scans stream
        if memory_limit:  # DuckDB keeps what it hashed: bound it, spill the rest to disk
            spill = Path(tempfile.gettempdir()) / "freshness-duckdb"
            self._con.sql(f"SET memory_limit = {_quote(memory_limit)}")
            self._con.sql(f"SET temp_directory = {_quote(str(spill))}")
        self._lock = threading.Lock()
        self._watch = tuple(watch)  # files whose stat says whether the data changed
        self._static = False  # True: the data only changes with the relation (a replay)
        self._scan_epoch = 0
        self._relation_version = 0
        self._cache: dict[str, tuple] = {}
        if getattr(self, "_remote", None):
            self._remote_stats()
        self._set_relation(relation_sql)

    @classmethod
    def from_parquet(cls, path: str | Path, **kwargs) -> TableSource:
        """A Parquet file, folder glob or list of files; or a file or folder on object storage
        (`s3://bucket/docs/`, `gs://…`, any pyarrow filesystem URI), read through pyarrow.fs."""
        text = str(path)
        if "://" in text and not text.startswith("file://"):
            return cls._from_remote_parquet(text, **kwargs)
        if "*" not in text and not Path(path).exists():
            raise SourceError(f"table source {text!r} does not exist: pass a Parquet path")
        return cls(f"SELECT * FROM read_parquet({_quote(text)})", f"parquet:{path}",
                   watch=(text,), **kwargs)

    @classmethod
    def _from_remote_parquet(cls, uri: str, **kwargs) -> TableSource:
        fs, base, _ = open_root(uri)
        try:
            kind = fs.get_file_info(base).type
        except OSError as exc:
            raise SourceError(f"cannot reach table source {redact_uri(uri)!r} ({exc}): check the "
                              "URI and the credentials in the environment") from exc
        if kind == pafs.FileType.NotFound:
            raise SourceError(f"table source {redact_uri(uri)!r} does not exist: pass a Parquet "
                              "object or a prefix holding Parquet objects")
        source = cls.__new__(cls)
        source._remote = (fs, base)
        source._remote_seen = None
        cls.__init__(source, "SELECT * FROM source_dataset", f"parquet:{redact_uri(uri)}",
                     **kwargs)
        return source

    @classmethod
    def from_duckdb(cls, database: str | Path, table: str, **kwargs) -> TableSource:
        """A table inside a DuckDB database file (opened read-only)."""
        if not Path(database).exists():
            raise SourceError(f"DuckDB database {str(database)!r} does not exist")
        con = duckdb.connect(str(database), read_only=True)
        ident = '"' + table.replace('"', '""') + '"'
        return cls(f"SELECT * FROM {ident}", f"duckdb:{database}:{table}", con=con,
                   watch=(str(database),), **kwargs)

    @classmethod
    def parquet_from_settings(cls, settings) -> TableSource:
        """`--source table --path X.parquet` (or s3://bucket/prefix/)."""
        if not settings.source_path:
            raise ConfigError("source_kind=table needs FRESHNESS_SOURCE_PATH (--path): a "
                              "Parquet file, glob, or object-storage URI")
        return cls.from_parquet(settings.source_path, max_doc_bytes=settings.max_doc_bytes,
                                memory_limit=settings.duckdb_memory_limit)

    @classmethod
    def duckdb_from_settings(cls, settings) -> TableSource:
        """`--source duckdb --path DB --table T`."""
        if not (settings.source_path and settings.source_table):
            raise ConfigError("source_kind=duckdb needs FRESHNESS_SOURCE_PATH (--path, the "
                              "DuckDB file) and FRESHNESS_SOURCE_TABLE (--table)")
        return cls.from_duckdb(settings.source_path, settings.source_table,
                               max_doc_bytes=settings.max_doc_bytes,
                               memory_limit=settings.duckdb_memory_limit)

    def _remote_stats(self) -> tuple:
        """(path, size, mtime) of every object of a remote Parquet source (one listing), and
        the dataset re-registered over the current objects when they moved."""
        fs, base = self._remote
        info = fs.get_file_info(base)
        if info.type == pafs.FileType.Directory:
            infos = [i for i in fs.get_file_info(pafs.FileSelector(base, recursive=True))
                     if i.type == pafs.FileType.File and i.path.endswith(".parquet")]
        else:
            infos = [info]
        stats = tuple(sorted((i.path, i.size, i.mtime_ns) for i in infos))
        mtimes = [m for _, _, m in stats]
        if None in mtimes or max(mtimes, default=0) >= time.time_ns() - int(RACY_WINDOW_S * 1e9):
            stats += (("racy", self._scan_epoch, 0),)  # rewritten within a tick: rescan per scan
        if stats != self._remote_seen:
            paths = [p for p, _, _ in stats if p != "racy"]
            dataset = pads.dataset(paths, filesystem=fs, format="parquet")
            self._con.register("source_dataset", dataset)
            self._remote_seen = stats
        return stats

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
            self._relation_version += 1

    def _query(self, sql: str, params: list | None = None) -> pa.Table:
        self._fingerprint()  # an object store's files may have moved: scan the current ones
        with self._lock:
            try:
                return self._con.sql(sql, params=params or None).to_arrow_table()
            except duckdb.Error as exc:
                raise SourceError(f"cannot read table source {self.name}: {exc}") from exc

    def discover(self) -> Discovery:
        rows = self._query("SELECT DISTINCT shard FROM source_docs ORDER BY shard").column(0)
        return Discovery.of_names(rows.to_pylist())

    def now(self) -> datetime:
        """The source's clock (the wall clock; a replay uses the replayed time)."""
        return utc_now()

    def refresh(self) -> None:
        """Start a new scan: data behind an arbitrary relation may have changed since the last.

        Sources over watched files (Parquet, a DuckDB file) or a replay keep their cache while
        the files are unchanged; others recompute once per scan (sync, detect, sensor tick)."""
        self._scan_epoch += 1

    def _fingerprint(self) -> tuple:
        """Changes whenever the data may have: the relation was replaced, a watched file
        moved, or (for unwatched relations) a new scan began."""
        if getattr(self, "_remote", None):
            return (self._relation_version, self._remote_stats())
        if not self._watch and not self._static:
            return (self._relation_version, self._scan_epoch)
        stats = []
        for pattern in self._watch:
            for path in sorted(glob.glob(pattern)) or [pattern]:
                try:
                    info = os.stat(path)
                    stats.append((path, info.st_mtime_ns, info.st_size))
                except OSError:
                    stats.append((path, None, None))
        return (self._relation_version, tuple(stats))

    def _cached(self, name: str, compute):
        """`compute()` once per fingerprint of the data."""
        key = self._fingerprint()
        hit = self._cache.get(name)
        if hit is None or hit[0] != key:
            hit = self._cache[name] = (key, compute())
        return hit[1]

    def change_tokens(self) -> dict[str, str]:
        """Per shard: row count, newest update time and an xor of row hashes (one SQL pass,
        skipped while the watched files are unchanged)."""
        def compute() -> dict[str, str]:
            rows = self._query(
                """SELECT shard, count(*) AS n, max(updated_at)::VARCHAR AS newest,
                          bit_xor(hash(doc_id, content)) AS digest
                   FROM source_docs GROUP BY shard"""
            ).to_pylist()
            return {r["shard"]: f"{r['n']}-{r['newest']}-{r['digest']}" for r in rows
                    if shard_name_problem(r["shard"]) is None}

        return dict(self._cached("tokens", compute))

    def _checked_sql(self) -> str:
        """Every row's md5 and problem code (NULL when it can be indexed), in one streaming
        projection: duplicates (over the whole table, so a doc id in two shards is refused in
        both) are a semi-join against the small `doc_copies` table."""
        return f"""
            SELECT d.shard, d.doc_id, md5(d.content) AS doc_hash, d.updated_at, d.size,
              CASE
                WHEN d.doc_id IS NULL OR trim(d.doc_id) = '' THEN 'missing_id'
                WHEN d.doc_id IN (SELECT doc_id FROM doc_copies) THEN 'duplicate'
                WHEN d.not_utf8 THEN 'not_utf8'
                WHEN d.content IS NULL OR regexp_matches(d.content, '{BLANK_RE2}') THEN 'empty'
                WHEN d.size > {int(self.max_doc_bytes)} THEN 'too_large'
              END AS problem
            FROM source_docs d"""

    def _reason(self, code: str, doc_id: str | None, size: int | None) -> str:
        """The message for a refused row: what is wrong and the fix."""
        if code == "duplicate":
            copies, shards = self._copies().get(doc_id, (2, 1))
            where = f" in {shards} shards" if shards > 1 else ""
            return (f"duplicate doc_id ({copies} rows{where}): make doc_id unique per "
                    "document; the indexed version is kept until it is")
        return {
            "missing_id": "row has no doc_id: every row needs a unique doc_id",
            "not_utf8": "not UTF-8 text: re-encode it as UTF-8",
            "empty": "empty document: nothing to embed",
            "too_large": f"document is {size} characters, over max_doc_bytes="
                         f"{self.max_doc_bytes}: split it or raise FRESHNESS_MAX_DOC_BYTES",
        }[code]

    def _copies(self) -> dict[str, tuple[int, int]]:
        self._ensure_doc_copies()
        rows = self._query("SELECT doc_id, copies, shards FROM doc_copies").to_pylist()
        return {r["doc_id"]: (r["copies"], r["shards"]) for r in rows}

    def _checked_all(self) -> tuple[pa.Table, dict[str, tuple[int, int]]]:
        """Every row's doc id, shard, md5, update time and problem, sorted by shard, with each
        shard's slice: one pass over the data for all shards, redone when the data changes."""
        def compute():
            self._ensure_doc_copies()
            # One projection streamed out of DuckDB (the text is hashed as it goes by, so the
            # connection's memory limit holds), sorted by shard in Arrow, sliced per shard.
            with self._lock:
                try:
                    table = self._con.sql(self._checked_sql()).arrow().read_all()
                except duckdb.Error as exc:
                    raise SourceError(f"cannot read table source {self.name}: {exc}") from exc
            table = table.take(pc.sort_indices(table, [("shard", "ascending"),
                                                      ("doc_id", "ascending")]))
            slices, start = {}, 0
            for entry in pc.value_counts(table["shard"]).to_pylist():
                slices[entry["values"]] = (start, entry["counts"])
                start += entry["counts"]
            return table, slices

        return self._cached("checked", compute)

    def listing(self, shard: str) -> Listing:
        """Valid rows of the shard (md5 hashed in DuckDB); refused rows become skips."""
        scanned_at = self.now()
        table, slices = self._checked_all()
        start, length = slices.get(shard, (0, 0))
        mine = table.slice(start, length)
        good = mine.filter(pc.is_null(mine["problem"]))
        updated, scan = good["updated_at"], pa.scalar(scanned_at, LISTING_SCHEMA[2].type)
        notes: Counter = Counter()
        if updated.null_count:
            notes["missing_updated_at_set_to_scan_time"] = updated.null_count
        future = int(pc.sum(pc.greater(updated, scan)).as_py() or 0) if good.num_rows else 0
        if future:
            notes["future_timestamp_clamped"] = future
        filled = pc.fill_null(updated, scan)
        clamped = pc.if_else(pc.greater(filled, scan), scan, filled) if good.num_rows \
            else updated
        docs = pa.table({"doc_id": good["doc_id"], "doc_hash": good["doc_hash"],
                         "updated_at": clamped}).cast(LISTING_SCHEMA)
        refused = mine.filter(pc.is_valid(mine["problem"])).to_pylist()
        skips = [Skip(str(r["doc_id"]), shard, self._reason(r["problem"], r["doc_id"], r["size"]))
                 for r in refused]
        return Listing(shard, docs, scanned_at, complete=True, skips=skips, notes=notes)

    def _ensure_doc_copies(self) -> None:
        """Doc ids that occur more than once (computed once per version of the data)."""
        def compute() -> bool:
            with self._lock:
                try:
                    self._con.sql(
                        """CREATE OR REPLACE TEMP TABLE doc_copies AS
                           SELECT doc_id, count(*) AS copies, count(DISTINCT shard) AS shards
                           FROM source_docs WHERE doc_id IS NOT NULL GROUP BY doc_id
                           HAVING count(*) > 1""")
                except duckdb.Error as exc:
                    raise SourceError(f"cannot read table source {self.name}: {exc}") from exc
            return True

        self._cached("copies", compute)

    def read(self, shard: str, doc_ids: Sequence[str]) -> pa.Table:
        wanted = pa.table({"doc_id": pa.array(list(doc_ids), pa.string())})
        self._ensure_doc_copies()  # (also re-registers moved objects of a remote source)
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
