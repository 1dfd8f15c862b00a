"""The repair job: delete wrong and orphan points, re-embed missing ones, per drifted shard."""

import dagster as dg

from assets.resources import FreshnessResource
from freshness.integrity.reconcile import reconcile


class RepairConfig(dg.Config):
    shards: list[str] = []  # empty: every shard


@dg.op(pool="gpu", description="Reconcile Qdrant with the manifests and repair any drift; "
                                "shards with pending changes are left to the policy's next run.")
def repair_index(context: dg.OpExecutionContext, config: RepairConfig,
                 freshness: FreshnessResource) -> dict:
    report = reconcile(freshness.runtime(), config.shards or None, repair=True)
    context.add_output_metadata({
        "drifted_shards": report["drifted_shards"], "repaired": report["repaired"],
        "repair_totals": report.get("repair_totals", {}),
        "deferred_to_policy": report.get("deferred_to_policy", [])})
    if report["drifted_shards"] and not report["repaired"]:
        raise dg.Failure(f"drift remains after repair in {report['drifted_shards']}",
                         metadata={"after": report.get("after", [])})
    return {"drifted_shards": report["drifted_shards"], "repaired": report["repaired"]}


@dg.job(description="Repair drift between Qdrant and the manifests (missing, orphan, "
                    "wrong-model points).")
def repair_index_job():
    repair_index()
