"""A change log (snapshot + replay Parquet, tldr-replay schema) seen as of any commit or time."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyarrow as pa

from freshness.errors import ConfigError, SourceError
from freshness.sources.table import TableSource, _quote
from freshness.util.timeutil import as_utc

LOG_COLUMNS = ("commit_seq", "committed_at", "path", "shard", "op", "content")


class ReplaySource(TableSource):
    """The source state after commit `as_of_seq` (or at time `as_of`) of a change log.

    `snapshot.parquet` holds the base state (op `add`, commit_seq 0); `replay.parquet` holds
    every later add/modify/delete. The doc id is the path; the update time is the commit time.
    """

    def __init__(
        self,
        snapshot: str | Path,
        replay: str | Path,
        as_of_seq: int | None = None,
        as_of: datetime | str | None = None,
        **kwargs,
    ) -> None:
        for path in (snapshot, replay):
            if not Path(path).exists():
                raise SourceError(
                    f"replay file {str(path)!r} does not exist: pass --snapshot and --replay "
                    "(e.g. ../shared/data/tldr-replay/snapshot.parquet and replay.parquet)"
                )
        self.snapshot, self.replay = str(snapshot), str(replay)
        import duckdb

        con = duckdb.connect()
        try:
            con.sql(
                f"""CREATE TEMP TABLE change_log AS
                SELECT commit_seq, committed_at, path, shard, op, content
                FROM read_parquet([{_quote(self.snapshot)}, {_quote(self.replay)}])"""
            )
        except duckdb.Error as exc:
            raise SourceError(
                f"replay files must have columns {list(LOG_COLUMNS)}: {exc}"
            ) from exc
        self.max_seq = con.sql("SELECT max(commit_seq) FROM change_log").fetchall()[0][0]
        self.as_of_seq = 0
        super().__init__(self._as_of_sql(0), f"replay:{replay}", con=con, **kwargs)
        self._static = True  # the log files are immutable: the data moves only with seek()
        self.seek(as_of_seq, as_of)

    @classmethod
    def from_settings(cls, settings) -> ReplaySource:
        """FRESHNESS_REPLAY_SNAPSHOT / _LOG (--snapshot/--replay), as of a commit."""
        if not (settings.replay_snapshot and settings.replay_log):
            raise ConfigError(
                "source_kind=replay needs FRESHNESS_REPLAY_SNAPSHOT and FRESHNESS_REPLAY_LOG "
                "(--snapshot/--replay): the snapshot.parquet and replay.parquet of a change log"
            )
        return cls(settings.replay_snapshot, settings.replay_log,
                   as_of_seq=settings.replay_as_of_seq, max_doc_bytes=settings.max_doc_bytes,
                   memory_limit=settings.duckdb_memory_limit)

    def _as_of_sql(self, seq: int) -> str:
        return f"""
            SELECT path AS doc_id, shard, content, committed_at AS updated_at,
                   to_json({{'commit_seq': commit_seq}})::VARCHAR AS metadata
            FROM change_log WHERE commit_seq <= {int(seq)}
            QUALIFY row_number() OVER (PARTITION BY path ORDER BY commit_seq DESC) = 1
                AND op <> 'delete'"""

    def seek(self, seq: int | None = None, at: datetime | str | None = None) -> int:
        """Move the view to commit `seq` or to the last commit at or before time `at`."""
        if at is not None:
            rows = self._con.sql(
                "SELECT coalesce(max(commit_seq), 0) FROM change_log WHERE committed_at <= ?",
                params=[as_utc(at)],
            ).fetchall()
            seq = rows[0][0]
        seq = self.max_seq if seq is None else max(0, min(int(seq), self.max_seq))
        self._clock = as_utc(at) if at is not None else self.commit_time(seq)
        sql = self._as_of_sql(seq)
        with self._lock:
            self._con.sql(f"CREATE OR REPLACE TEMP TABLE source_state AS {sql}")
        self._set_relation("SELECT * FROM source_state")
        self.as_of_seq = seq
        return seq

    def now(self) -> datetime:
        """The replayed time: the commit (or `at` time) the source was last moved to."""
        return getattr(self, "_clock", None) or super().now()

    def commit_time(self, seq: int) -> datetime | None:
        """Commit time of `seq`."""
        rows = self._con.sql(
            "SELECT max(committed_at) FROM change_log WHERE commit_seq = ?", params=[seq]
        ).fetchall()
        return as_utc(rows[0][0]) if rows and rows[0][0] else None

    def touched_paths(self, after_seq: int, through_seq: int) -> list[str]:
        """Paths changed by commits in (after_seq, through_seq]."""
        rows = self._con.sql(
            "SELECT DISTINCT path FROM change_log WHERE commit_seq > ? AND commit_seq <= ?",
            params=[after_seq, through_seq],
        ).fetchall()
        return sorted(r[0] for r in rows)

    def contents_as_of(self, seq: int, paths: list[str]) -> pa.Table:
        """(doc_id, content) of the given paths as of commit `seq` (deleted ones left out)."""
        wanted = pa.table({"path": pa.array(paths, pa.string())})
        with self._lock:
            self._con.register("wanted_paths", wanted)
            try:
                return self._con.sql(
                    f"""SELECT doc_id, content FROM ({self._as_of_sql(seq)})
                        WHERE doc_id IN (SELECT path FROM wanted_paths)"""
                ).to_arrow_table()
            finally:
                self._con.unregister("wanted_paths")

    def changes(self) -> pa.Table:
        """The whole change log (commit_seq, committed_at, path, shard, op), in replay order."""
        return self._con.sql(
            "SELECT commit_seq, committed_at, path, shard, op FROM change_log "
            "ORDER BY commit_seq, path"
        ).to_arrow_table()
