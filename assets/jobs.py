"""Jobs and schedules for re-embedding."""


import dagster as dg

from assets.partitions import shard_partitions
from assets.shard_embeddings import shard_embeddings
from assets.source_changes import source_changes

reembed_job = dg.define_asset_job(
    "reembed_shards",
    selection=[shard_embeddings],
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
