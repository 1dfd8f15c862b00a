"""Source-change sensor: poll cheaply, update rates, and request runs for shards that are due."""

import json

import dagster as dg

from assets.jobs import reembed_job
from assets.partitions import shard_partitions
from assets.resources import FreshnessResource
from freshness.pipeline.detect import PendingSummary, detect_shard
from freshness.pipeline.retire import vanished_shards
from freshness.policy.cadence import decide
from freshness.policy.planner import CostModel
from freshness.sources.base import Discovery
from freshness.util.timeutil import utc_now

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def _summaries(rt, tokens: dict, cursor: dict) -> tuple[list[PendingSummary], list[str]]:
    """Fresh detection for shards whose token moved or that had pending changes; the last
    recorded summary for the rest (they are unchanged and fully embedded)."""
    moved = [s for s, t in tokens.items() if cursor.get("tokens", {}).get(s) != t]
    scan = sorted(set(moved) | (set(cursor.get("pending", [])) & set(tokens)))
    summaries = {s: detect_shard(rt, s) for s in scan}
    state = rt.shard_state()
    for shard in tokens:
        if shard not in summaries:
            stored = state.read_pending(shard)
            summaries[shard] = PendingSummary.from_dict(stored) if stored else \
                detect_shard(rt, shard)
    return [summaries[s] for s in sorted(summaries)], scan


def _run_request(shards: list[str], summaries: list[PendingSummary],
                 order: list[str]) -> dg.RunRequest:
    """One run for all given shards: a partition range over them (single-run backfill
    policy), so the model loads once. Shards inside the range that have nothing pending
    cost one listing each."""
    shards = sorted(shards, key=order.index)
    versions = {s.shard: (s.manifest_version, s.pending_docs) for s in summaries
                if s.shard in shards}
    key = ",".join(f"{s}:v{versions[s][0]}:{versions[s][1]}" for s in shards)
    tags = {"freshness/trigger": "policy", "freshness/shards": ",".join(shards)[:200]}
    if len(shards) == 1:
        return dg.RunRequest(partition_key=shards[0], run_key=key, tags=tags)
    return dg.RunRequest(run_key=key, tags={**tags, RANGE_START: shards[0],
                                            RANGE_END: shards[-1]})


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
                "re-embedding run when a shard's staleness debt reaches the budget's threshold.",
)
def source_change_sensor(context: dg.SensorEvaluationContext,
                         freshness: FreshnessResource) -> dg.SensorResult:
    rt, now = freshness.runtime(), utc_now()
    settings = rt.settings
    cursor = json.loads(context.cursor) if context.cursor else {}
    rt.source.refresh()
    tokens = rt.source.change_tokens()
    summaries, scanned = _summaries(rt, tokens, cursor)
    known = context.instance.get_dynamic_partitions(shard_partitions.name)
    new = [s for s in tokens if s not in known]
    sla = settings.max_staleness_hours / 24 if settings.max_staleness_hours else None
    decision = decide(summaries, now, settings.budget_gpu_seconds_per_day, rt.store,
                      CostModel(settings.run_overhead_s, settings.per_chunk_s), sla,
                      settings.min_interval_minutes / 1440, batch=settings.batch_shards)
    for s in summaries:
        if s.rate_spike:
            context.log.warning("change-rate spike in shard %s: %.4f changes/doc/day",
                                s.shard, s.rate_per_doc_day or 0.0)
    context.log.info("scanned %d of %d shards; debt threshold %.3g; due: %s", len(scanned),
                     len(tokens), decision.plan.debt_threshold,
                     [v.shard for v in decision.verdicts if v.due])
    order = list(known) + new
    if not decision.run_shards:
        requests = []
    elif settings.batch_shards:
        requests = [_run_request(decision.run_shards, summaries, order)]
    else:
        requests = [_run_request([s], summaries, order) for s in decision.run_shards]
    pending = [s.shard for s in summaries if s.pending_docs]
    retire, drop = _vanished(rt, tokens, known)
    requests += [dg.RunRequest(partition_key=s, run_key=f"retire-{s}")
                 for s in retire]
    partition_requests = [shard_partitions.build_add_request(new)] if new else []
    if drop:
        partition_requests.append(shard_partitions.build_delete_request(drop))
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=partition_requests,
        cursor=json.dumps({"tokens": tokens, "pending": pending}),
    )
