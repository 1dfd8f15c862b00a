"""Jobs and schedules for re-embedding."""

import json
from pathlib import Path

import dagster as dg
import yaml

from assets.partitions import shard_partitions
from assets.resources import FreshnessResource
from assets.shard_embeddings import shard_embeddings
from assets.source_changes import source_changes
from freshness.config import Settings
from freshness.pipeline.detect import PendingSummary
from freshness.policy.cadence import decide_for, observe
from freshness.util.timeutil import utc_now

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def reembed_run_tags() -> dict[str, str]:
    """`freshness/gpu=true` (run-level GPU limits key on it), plus the tags in the YAML file
    FRESHNESS_REEMBED_RUN_TAGS names (deploy/k8s/gpu_run_tags.yaml on Kubernetes)."""
    tags = {"freshness/gpu": "true"}
    path = Settings.from_env().reembed_run_tags
    if path:
        extra = yaml.safe_load(Path(path).read_text()) or {}
        tags.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in extra.items()})
    return tags


def retire_request(shard: str) -> dg.RunRequest:
    """A run that retires a shard gone from the source (points deleted, state archived). It
    embeds nothing, so it asks for no GPU: run-request tags win over the job's, so it is not
    counted by the run queue's GPU limit and, on Kubernetes, gets the launcher's default pod
    (no GPU, no GPU node) instead of the re-embedding runs' `dagster-k8s/config`."""
    return dg.RunRequest(partition_key=shard, run_key=f"retire-{shard}", tags={
        "freshness/trigger": "retire", "freshness/gpu": "false", "dagster-k8s/config": "{}"})


reembed_job = dg.define_asset_job(
    "reembed_shards",
    selection=[shard_embeddings],
    tags=reembed_run_tags(),
    description="Re-embed the changed chunks of the requested shard(s).",
)

scan_job = dg.define_asset_job(
    "scan_sources",
    selection=[source_changes],
    description="Scan every shard and record pending changes (no embedding).",
)


def run_request(shards: list[str], summaries: list[PendingSummary], order: list[str],
                trigger: str) -> dg.RunRequest:
    """One run for all given shards: a partition range over them (single-run backfill
    policy), so the model loads once. Shards inside the range that have nothing pending
    cost one listing each."""
    shards = sorted(shards, key=order.index)
    versions = {s.shard: (s.manifest_version, s.pending_docs) for s in summaries
                if s.shard in shards}
    key = ",".join(f"{s}:v{versions[s][0]}:{versions[s][1]}" for s in shards)
    tags = {"freshness/trigger": trigger, "freshness/shards": ",".join(shards)[:200]}
    if len(shards) == 1:
        return dg.RunRequest(partition_key=shards[0], run_key=key, tags=tags)
    return dg.RunRequest(run_key=key, tags={**tags, RANGE_START: shards[0],
                                            RANGE_END: shards[-1]})


@dg.schedule(job=reembed_job, cron_schedule="0 * * * *",
             default_status=dg.DefaultScheduleStatus.STOPPED)
def hourly_reembed_sweep(context: dg.ScheduleEvaluationContext, freshness: FreshnessResource):
    """Optional safety net (off by default: the sensor's SLA does this job): scan every shard
    and ask the same control loop; at most one batched run, within the budget."""
    rt = freshness.runtime()
    getattr(rt.source, "refresh", lambda: None)()
    summaries, _ = observe(rt, rt.source.change_tokens(), {}, [])
    decision = decide_for(rt, summaries, context.scheduled_execution_time or utc_now())
    if not decision.run_shards:
        return dg.SkipReason("the control loop says wait: " + ", ".join(
            sorted({v.reason for v in decision.verdicts})))
    order = context.instance.get_dynamic_partitions(shard_partitions.name)
    order = list(order) + [s.shard for s in summaries if s.shard not in order]
    return [run_request(decision.run_shards, summaries, order, "schedule")]
