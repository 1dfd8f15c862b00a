"""Source-change sensor: poll cheaply, update rates, and request runs for shards that are due."""

import json

import dagster as dg

from assets.jobs import reembed_job, retire_request, run_request
from assets.partitions import shard_partitions
from assets.resources import FreshnessResource
from freshness.pipeline.retire import vanished_shards
from freshness.policy.cadence import decide_for, observe
from freshness.sources.base import Discovery
from freshness.util.timeutil import as_utc, iso, utc_now


def _vanished(rt, tokens: dict[str, str], known: list[str]) -> tuple[list[str], list[str]]:
    """(partitions gone from the source whose state remains: a run retires them; partitions
    gone and already retired: deleted). An empty source retires and deletes nothing."""
    gone = [s for s in known if s not in tokens] if tokens else []
    retire, _ = vanished_shards(rt, Discovery(list(tokens)), gone)
    return retire, [s for s in gone if s not in retire]


@dg.sensor(
    job=reembed_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Polls shard change tokens, records change rates, and requests one batched "
                "re-embedding run when the control loop (freshness.policy.control) says so.",
)
def source_change_sensor(context: dg.SensorEvaluationContext,
                         freshness: FreshnessResource) -> dg.SensorResult:
    return policy_tick(context, freshness, utc_now())


def policy_tick(context: dg.SensorEvaluationContext, freshness: FreshnessResource,
                now) -> dg.SensorResult:
    """One tick at `now` (injectable for replays): observe, decide, translate to run requests."""
    rt = freshness.runtime()
    settings = rt.settings
    cursor = json.loads(context.cursor) if context.cursor else {}
    rt.source.refresh()
    tokens = rt.source.change_tokens()
    summaries, scanned = observe(rt, tokens, cursor.get("tokens", {}), cursor.get("pending", []))
    known = context.instance.get_dynamic_partitions(shard_partitions.name)
    new = [s for s in tokens if s not in known]
    since = as_utc(cursor["since"]) if cursor.get("since") else now
    decision = decide_for(rt, summaries, now, start=since)
    for s in summaries:
        if s.rate_spike:
            context.log.warning("change-rate spike in shard %s: %.4f changes/doc/day",
                                s.shard, s.rate_per_doc_day or 0.0)
    context.log.info("scanned %d of %d shards; threshold %.3g; stale rate %.3g; credit %.1f s; "
                     "due: %s", len(scanned), len(tokens), decision.loop.plan.threshold,
                     decision.loop.stale_rate, decision.loop.credit_s,
                     [v.shard for v in decision.verdicts if v.due])
    order = list(known) + new
    if not decision.run_shards:
        requests = []
    elif settings.batch_shards:
        requests = [run_request(decision.run_shards, summaries, order, "policy")]
    else:
        requests = [run_request([s], summaries, order, "policy") for s in decision.run_shards]
    pending = [s.shard for s in summaries if s.pending_docs]
    retire, drop = _vanished(rt, tokens, known)
    requests += [retire_request(s) for s in retire]  # no embedding: no GPU
    partition_requests = [shard_partitions.build_add_request(new)] if new else []
    if drop:
        partition_requests.append(shard_partitions.build_delete_request(drop))
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=partition_requests,
        cursor=json.dumps({"tokens": tokens, "pending": pending, "since": iso(since)}),
    )
