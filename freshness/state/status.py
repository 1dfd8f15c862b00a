"""Per-shard freshness table: last source change seen, last embedded, oldest pending change."""

from __future__ import annotations

from datetime import datetime

import duckdb
import pyarrow as pa

from freshness.errors import StateError
from freshness.state import layout
from freshness.state.manifest import ShardStateStore
from freshness.util.timeutil import as_utc, utc_now

TS = pa.timestamp("us", tz="UTC")
STATUS_SCHEMA = pa.schema(
    [
        ("shard", pa.string()),
        ("docs", pa.int64()),
        ("chunks", pa.int64()),
        ("version", pa.int64()),
        ("last_source_change_seen", TS),
        ("last_embedded_at", TS),
        ("last_synced_at", TS),
        ("oldest_pending_change", TS),
        ("pending_docs", pa.int64()),
        ("scanned_at", TS),
        ("state_error", pa.string()),  # the shard's state could not be read: why, and the fix
    ]
)


def _row(state: ShardStateStore, shard: str) -> dict:
    info = state.store.read_json(*layout.shard_dir(state.collection, shard),
                                 layout.MANIFEST_FILE) or {}
    pending = state.read_pending(shard) or {}
    version = int(info.get("version", 0))
    pending_valid = pending.get("manifest_version") == version
    seen = [as_utc(info.get("last_source_change_seen")),
            as_utc(pending.get("last_source_change_seen")) if pending_valid else None]
    return {
        "shard": shard,
        "docs": info.get("docs", 0),
        "chunks": info.get("chunks", 0),
        "version": version,
        "last_source_change_seen": max((s for s in seen if s), default=None),
        "last_embedded_at": as_utc(info.get("last_embedded_at")),
        "last_synced_at": as_utc(info.get("last_synced_at")),
        "oldest_pending_change":
            as_utc(pending.get("oldest_pending_change")) if pending_valid else None,
        "pending_docs": int(pending.get("pending_docs", 0)) if pending_valid else 0,
        "scanned_at": as_utc(pending.get("scanned_at") or info.get("source_scanned_at")),
    }


def _row_or_error(state: ShardStateStore, shard: str) -> dict:
    """The shard's row; a shard whose state files cannot be read gets a row that says so
    (`state_error` names the file and the fix) instead of failing every other shard's row."""
    try:
        return _row(state, shard)
    except StateError as exc:
        return {"shard": shard, "docs": 0, "chunks": 0, "version": 0, "pending_docs": 0,
                "state_error": str(exc)}


def shard_status(state: ShardStateStore, now: datetime | None = None) -> pa.Table:
    """One row per known shard, with `pending_age_seconds` (0 when nothing is pending)."""
    names = state.shard_folders()
    rows = pa.Table.from_pylist([_row_or_error(state, s) for s in names], STATUS_SCHEMA)
    con = duckdb.connect()
    con.register("shards", rows)
    return con.sql(
        """SELECT *, coalesce(epoch(?::TIMESTAMPTZ) - epoch(oldest_pending_change), 0)
                  AS pending_age_seconds
           FROM shards ORDER BY shard""",
        params=[now or utc_now()],
    ).to_arrow_table()
