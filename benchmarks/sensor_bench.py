"""Sensor tick time with 10 k shards × 20 docs (a Parquet table source, 200 k docs).

Timed, each the median of n runs:
- `TableSource.change_tokens()` over the whole table (one SQL pass);
- the decision path: `freshness.policy.cadence.decide` over 10 k `PendingSummary` objects (1 % with
  pending changes), the control loop's plan included;
- the real `source_change_sensor` through `dagster.build_sensor_context` with a
  `FreshnessResource(source_kind="table")`, in steady state (pending.json written for every
  shard, every partition registered): a *quiet* tick (no token moved) and a *busy* tick
  (1 % of the shards' tokens moved, so those shards are listed and diffed).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import duckdb

from benchmarks.common import Context, Figure, median, timed

DOCS_PER_SHARD = 20
TARGET_S = 2.0


def generate(path, shards: int) -> None:
    """A Parquet table (doc_id, shard, content, updated_at), sorted by shard, small groups."""
    con = duckdb.connect(config={"threads": 2})
    con.sql(f"""COPY (
        SELECT 's' || lpad((i // {DOCS_PER_SHARD})::VARCHAR, 5, '0') AS shard,
               'doc-' || i AS doc_id, repeat(md5(i::VARCHAR) || ' ', 6) AS content,
               TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_seconds(i) AS updated_at
        FROM range({shards * DOCS_PER_SHARD}) t(i) ORDER BY shard, doc_id
    ) TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE 20480)""")


def summaries(names: list[str], now: datetime) -> list:
    """Synthetic steady-state detection results: 1 % of shards have 2 pending docs."""
    from freshness.pipeline.detect import PendingSummary

    out = []
    for i, shard in enumerate(names):
        pending = 2 if i % 100 == 0 else 0
        since = now - timedelta(hours=1 + i % 48)
        out.append(PendingSummary(
            shard, 0, pending, 0, DOCS_PER_SHARD - pending, 0, True, now, 3,
            since if pending else None, since, docs=DOCS_PER_SHARD,
            pending_since_sum_days=pending * since.timestamp() / 86400.0,
            rate_per_doc_day=0.002 + (i % 7) * 0.0005))
    return out


def _sensor_setup(ctx: Context, parquet, names: list[str], state: list):
    """Resource, instance and steady-state files for the real sensor."""
    import dagster as dg

    from assets.partitions import shard_partitions
    from assets.resources import FreshnessResource

    root = ctx.scratch / "sensor"
    resource = FreshnessResource(source_kind="table", source_path=str(parquet),
                                 state_root=str(root / "state"),
                                 index_path=str(root / "qdrant"), device="cpu")
    rt = resource.runtime()
    shard_state = rt.shard_state()
    for summary in state:
        shard_state.write_pending(summary.shard, summary.as_dict())
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(shard_partitions.name, names)
    return resource, instance, rt


def _tick(instance, resource, cursor: dict):
    import dagster as dg

    from sensors.source_change_sensor import source_change_sensor

    context = dg.build_sensor_context(instance=instance, cursor=json.dumps(cursor),
                                      resources={"freshness": resource})
    return source_change_sensor(context)


def run(ctx: Context) -> dict:
    """change_tokens, decide, plan, and real sensor ticks (quiet and busy)."""
    from freshness.policy.cadence import decide
    from freshness.policy.planner import CostModel
    from freshness.sources import TableSource
    from freshness.state.store import StateStore

    n_shards = 1000 if ctx.quick else 10_000
    parquet = ctx.scratch / "sensor-table.parquet"
    generate(parquet, n_shards)
    source = TableSource.from_parquet(parquet)
    runs: dict[str, list[float]] = {k: [] for k in ("tokens", "decide", "quiet", "busy")}
    tokens = {}
    for _ in range(ctx.reps):
        seconds, tokens = timed(source.change_tokens)
        runs["tokens"].append(seconds)
    names = sorted(tokens)
    now = datetime.now(timezone.utc)
    state = summaries(names, now)
    store = StateStore(str(ctx.scratch / "sensor-decide"))
    decision = None
    for _ in range(ctx.reps):
        seconds, decision = timed(lambda: decide(state, now, 3600.0, store, CostModel()))
        runs["decide"].append(seconds)
    resource, instance, rt = _sensor_setup(ctx, parquet, names, state)
    pending = [s.shard for s in state if s.pending_docs]
    quiet = {"tokens": tokens, "pending": []}
    busy = {"tokens": {k: (v if i % 100 else "moved") for i, (k, v) in
                       enumerate(sorted(tokens.items()))}, "pending": pending}
    results = {}
    import sensors.source_change_sensor  # noqa: F401 - import outside the timings

    for _ in range(ctx.reps):
        for name, cursor in (("quiet", quiet), ("busy", busy)):
            seconds, results[name] = timed(lambda c=cursor: _tick(instance, resource, c))
            runs[name].append(seconds)
    moved = n_shards // 100
    figures = [
        Figure("sensor", f"change_tokens(), {n_shards:,} shards", round(median(runs["tokens"]),
               3), "s", ctx.reps, note=f"{n_shards * DOCS_PER_SHARD:,} docs in one Parquet"),
        Figure("sensor", f"cadence.decide, {n_shards:,} summaries",
               round(median(runs["decide"]), 3), "s", ctx.reps,
               note=f"{len(decision.run_shards)} shards due; includes the threshold plan"),
        Figure("sensor", f"real sensor tick, quiet, {n_shards:,} shards",
               round(median(runs["quiet"]), 3), "s", ctx.reps, None, None,
               f"<= {TARGET_S:.0f} s", median(runs["quiet"]) <= TARGET_S,
               f"build_sensor_context; {len(results['quiet'].run_requests)} run request(s)"),
        Figure("sensor", f"real sensor tick, busy ({moved} shards moved)",
               round(median(runs["busy"]), 3), "s", ctx.reps, None, None,
               f"<= {TARGET_S:.0f} s", median(runs["busy"]) <= TARGET_S,
               f"{moved} shards listed + diffed; "
               f"{len(results['busy'].run_requests)} run request(s)"),
    ]
    return {"figures": figures, "details": {"shards": n_shards, "runs": runs,
                                            "collection": rt.collection}}
