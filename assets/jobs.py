"""Jobs and schedules for re-embedding."""

import json
from pathlib import Path

import dagster as dg
import yaml

from assets.partitions import shard_partitions
from assets.shard_embeddings import shard_embeddings
from assets.source_changes import source_changes
from freshness.config import Settings


def reembed_run_tags() -> dict[str, str]:
    """`freshness/gpu=true` (run-level GPU limits key on it), plus the tags in the YAML file
    FRESHNESS_REEMBED_RUN_TAGS names (deploy/k8s/gpu_run_tags.yaml on Kubernetes)."""
    tags = {"freshness/gpu": "true"}
    path = Settings.from_env().reembed_run_tags
    if path:
        extra = yaml.safe_load(Path(path).read_text()) or {}
        tags.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in extra.items()})
    return tags


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


@dg.schedule(job=reembed_job, cron_schedule="0 * * * *",
             default_status=dg.DefaultScheduleStatus.RUNNING)
def hourly_reembed_sweep(context: dg.ScheduleEvaluationContext):
    """Every hour, sync every known shard: cheap when nothing changed, a safety net otherwise."""
    shards = context.instance.get_dynamic_partitions(shard_partitions.name)
    hour = context.scheduled_execution_time.strftime("%Y-%m-%dT%H")
    return [dg.RunRequest(partition_key=s, run_key=f"sweep:{s}:{hour}",
                          tags={"freshness/trigger": "schedule"}) for s in shards]
