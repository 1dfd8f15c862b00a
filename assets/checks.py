"""Asset checks: shards within their staleness SLA, and Qdrant agreeing with the manifests."""

import dagster as dg
import pyarrow as pa

from assets.metadata import table
from assets.resources import FreshnessResource
from assets.shard_freshness import shard_freshness
from freshness.alerts.staleness import Level, ShardStaleness, SlaConfig, evaluate
from freshness.integrity.reconcile import reconcile
from freshness.state.status import shard_status
from freshness.state.traffic import traffic_shares
from freshness.util.timeutil import utc_now

SEVERITY = {Level.WARN: dg.AssetCheckSeverity.WARN, Level.ERROR: dg.AssetCheckSeverity.ERROR}


@dg.asset_check(asset=shard_freshness, name="shards_within_sla",
                description="Every shard's oldest pending change is within its SLA "
                            "(WARN past the warn fraction, ERROR past the SLA).")
def shards_within_sla(freshness: FreshnessResource) -> dg.AssetCheckResult:
    rt = freshness.runtime()
    results = evaluate(shard_status(rt.shard_state()), SlaConfig.from_settings(rt.settings),
                       utc_now(),
                       traffic_shares(rt.store))
    return dg.AssetCheckResult(**sla_outcome(results))


def sla_outcome(results: list[ShardStaleness]) -> dict:
    """The shards_within_sla verdict (passed, severity, metadata) for shard levels: what the
    check returns when it runs, and what the alert sensor reports every tick in between."""
    worst = max((r.level for r in results), default=Level.OK)
    rows = pa.Table.from_pylist([
        {"shard": r.shard, "level": r.level.name, "pending_docs": r.pending_docs,
         "pending_age_hours": round(r.pending_age_seconds / 3600, 3),
         "sla_hours": round(r.sla_seconds / 3600, 3), "reason": r.reason} for r in results])
    return {"passed": worst == Level.OK,
            "severity": SEVERITY.get(worst, dg.AssetCheckSeverity.WARN),
            "metadata": {"stale_shards": [r.shard for r in results if r.level == Level.ERROR],
                         "warn_shards": [r.shard for r in results if r.level == Level.WARN],
                         **({"shards": table(rows)} if rows.num_rows else {})}}


@dg.asset_check(asset=shard_freshness, name="index_matches_manifests",
                description="Qdrant holds exactly the manifests' points, with the right "
                            "content hashes and model revision (run the repair_index job to fix). "
                            "Source changes not yet embedded are lag (shards_within_sla), "
                            "not drift.")
def index_matches_manifests(freshness: FreshnessResource) -> dg.AssetCheckResult:
    report = reconcile(freshness.runtime(), sample=200)  # full check: the repair_index job
    rows = pa.Table.from_pylist([
        {"shard": c["shard"], "level": "ERROR" if c["index_drift"] else "OK",
         **{k: c[k] for k in ("points_indexed", "points_missing", "points_orphan",
                              "payload_mismatch")},
         "pending_docs_lag": c["docs_missing"] + c["docs_stale"] + c["docs_extra"]}
        for c in report["checked"]])
    drifted = report["index_drifted_shards"]
    return dg.AssetCheckResult(
        passed=not drifted,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"drifted_shards": drifted, "shards_checked": len(report["checked"]),
                  **({"shards": table(rows)} if rows.num_rows else {})},
    )
