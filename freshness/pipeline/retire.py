"""Retiring shards that vanished from the source: their points leave the index, their state
is archived, and the run reports them.

Only a complete discovery retires: a source root that lists no shard at all (an unmounted
volume, an emptied table) retires nothing and says why. Order per shard and collection,
under the shard's lease: delete the points, then archive the state (copy, then delete), so a
crash anywhere leaves the shard known and the next run retires it again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from freshness.runtime import Runtime
from freshness.sources.base import Discovery
from freshness.state import layout
from freshness.state.lease import ShardLease
from freshness.util.faults import fault_point
from freshness.util.shard_names import is_valid_shard_name
from freshness.util.timeutil import file_stamp


def _collections(rt: Runtime) -> list[str]:
    """The configured collection and, during a model change, the one still served."""
    serving = rt.serving_collection()
    return [rt.collection] + ([serving] if serving and serving != rt.collection else [])


def vanished_shards(rt: Runtime, discovery: Discovery,
                    requested: Sequence[str] | None) -> tuple[list[str], str | None]:
    """(shards with state that the source no longer has, why none may be retired or None)."""
    known: set[str] = set()
    for collection in _collections(rt):
        known |= {s for s in rt.shard_state(collection).shard_folders()
                  if is_valid_shard_name(s)}
    gone = known - set(discovery.shards)
    if requested is not None:
        gone &= set(requested)
    if gone and not discovery.shards:
        return [], (f"source {rt.source.name} lists no shard at all: nothing retired and "
                    f"{len(known)} indexed shard(s) kept, as an empty or unmounted source is "
                    "more likely a fault than a deletion; check FRESHNESS_SOURCE_PATH")
    return sorted(gone), None


def retire_shard(rt: Runtime, shard: str) -> dict:
    """Delete a vanished shard's points and archive its state in every collection holding it."""
    report: dict = {"retired": True, "collections": {}}
    stamp = file_stamp()
    for collection in _collections(rt):
        state = rt.shard_state(collection)
        if shard not in state.shard_folders():
            continue
        lease = ShardLease(rt.store, collection, shard)
        lease.acquire(rt.settings.lock_timeout_s)
        try:
            manifest = rt.store.read_bytes(*layout.shard_dir(collection, shard),
                                           layout.MANIFEST_FILE)
            chunks = _chunk_count(manifest)
            rt.index.drop_shard(collection, shard)
            fault_point("retire_archive")
            archived = state.archive(shard, stamp)
        finally:
            lease.release()
        report["collections"][collection] = {"chunks_retired": chunks,
                                             "archived_to": "/".join(archived)}
    return report


def _chunk_count(manifest: bytes | None) -> int:
    try:
        return int(json.loads(manifest or b"{}").get("chunks", 0))
    except (ValueError, TypeError, AttributeError):
        return 0
