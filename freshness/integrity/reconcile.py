"""Reconciliation: find where Qdrant drifted from the manifests, and repair it.

Drift: points deleted behind our back (missing), points no manifest claims (orphans), points
whose payload names another content hash or model revision (wrong). Repair deletes the wrong
points, then a sync re-embeds every missing point and deletes every orphan — the same code
path as a normal run, so a repair is as crash-safe as a sync. A drifted shard with pending
source changes is not synced by the repair (that would embed the pending changes outside the
policy and its budget): its wrong points are deleted and the rest is deferred to the policy's
next run, whose sync reads the shard's index ids and repairs missing points and orphans.
"""

from __future__ import annotations

from collections.abc import Sequence

from freshness.integrity.verify import ShardCheck, verify
from freshness.pipeline.detect import detect_shard
from freshness.pipeline.sync import sync
from freshness.runtime import Runtime


def reconcile(rt: Runtime, shards: Sequence[str] | None = None, repair: bool = False,
              sample: int | None = None) -> dict:
    """Check every payload of the given shards (all by default); repair when asked."""
    checks = verify(rt, shards, deep=False, sample=sample)
    drifted = [c for c in checks if not c.ok]
    report: dict = {"checked": [c.as_dict() for c in checks],
                    "drifted_shards": [c.shard for c in drifted],
                    "index_drifted_shards": [c.shard for c in checks if c.index_drift],
                    "repaired": False}
    if repair and drifted:
        for check in drifted:
            _delete_wrong_points(rt, check)
        deferred = [c.shard for c in drifted
                    if detect_shard(rt, c.shard, record_rate=False).pending_docs]
        quiet = [c.shard for c in drifted if c.shard not in deferred]
        result = sync(rt, quiet, check_index=True) if quiet else None
        after = verify(rt, quiet, deep=False, sample=sample) if quiet else []
        report.update(repaired=all(c.ok for c in after),
                      repair_totals=dict(result.totals) if result else {},
                      deferred_to_policy=deferred, after=[c.as_dict() for c in after])
    return report


def _delete_wrong_points(rt: Runtime, check: ShardCheck) -> None:
    if check.mismatched_point_ids:
        with rt.index.open_shard(rt.collection, check.shard) as session:
            session.delete(check.mismatched_point_ids)
