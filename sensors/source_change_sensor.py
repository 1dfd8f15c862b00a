"""Source-change sensor: detect changes cheaply, register new shards, request re-embedding."""


import dagster as dg

from assets.jobs import reembed_job
from assets.partitions import shard_partitions
from assets.resources import FreshnessResource
from freshness.detect import detect


def _run_key(summary) -> str:
    """Unique per pending state, so repeated ticks never queue the same work twice."""
    return (f"{summary.shard}:v{summary.manifest_version}:{summary.pending_docs}:"
            f"{summary.last_source_change_seen}")


@dg.sensor(
    job=reembed_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Scans shards for changed documents and requests a re-embedding run per shard.",
)
def source_change_sensor(context: dg.SensorEvaluationContext,
                         freshness: FreshnessResource) -> dg.SensorResult:
    discovery, pending = detect(freshness.runtime())
    known = set(context.instance.get_dynamic_partitions(shard_partitions.name))
    new = [s for s in discovery.shards if s not in known]
    requests = [
        dg.RunRequest(partition_key=p.shard, run_key=_run_key(p),
                      tags={"freshness/trigger": "source_change"})
        for p in pending if p.pending_docs
    ]
    context.log.info("shards %d, new %d, pending %s", len(pending), len(new),
                     {p.shard: p.pending_docs for p in pending if p.pending_docs})
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[shard_partitions.build_add_request(new)] if new else [],
    )
