"""The deployed loop equals the simulated loop: a change log replayed through the real Dagster
sensor (injectable clock, `policy_tick`) makes the same run decisions as the simulator replaying
the same log at the same poll times, and the stale-retrieval rate measured from request logs
matches the simulator's within Monte Carlo error."""

import math
from datetime import timedelta

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from freshness.pipeline.sync import sync
from freshness.policy import cadence
from freshness.policy.control import LoopConfig, plan_threshold
from freshness.policy.learned_traffic import LearnedShares
from freshness.policy.planner import CostModel
from freshness.policy.simulator import ChangeLog, adaptive, evaluate
from freshness.sources import ReplaySource
from freshness.state.runs import load_runs, run_cost_of
from freshness.state.traffic import Traffic, record_days, write_traffic
from freshness.util.timeutil import DAY_S, as_utc
from sensors.source_change_sensor import policy_tick
from tests.test_recency_vs_simulator import (
    QUERIES,
    SCHEMA,
    T0,
    write_change_log,
    zipf_popularity,
    zipf_queries_report,
)

TICK_DAYS = 1.5
BUDGET = 1e6  # ample: the credit never binds, so measured run costs cannot tell the two apart
TOKENS_PER_DAY = 25.0  # tight: the loop's plan wants more runs than the tokens allow
RETRIEVALS_PER_DAY = 200.0  # the learned-shares replay's query stream


class Fixed:
    """The sensor's resource, holding one runtime (the replayed source keeps its position)."""

    def __init__(self, rt) -> None:
        self.rt = rt

    def runtime(self):
        return self.rt


def write_known_traffic(rt, log: ChangeLog) -> None:
    """The traffic file recency would write: per-doc shares of the log's known traffic."""
    q, names = log.known_traffic(), log.doc_ids
    write_traffic(rt.store, Traffic(
        {s: float(q[log.doc_shard == i].sum()) for i, s in enumerate(log.shard_names)},
        {s: {names[d]: float(q[d]) for d in np.flatnonzero(log.doc_shard == i)}
         for i, s in enumerate(log.shard_names)}))


def replay_through_sensor(rt, source: ReplaySource, horizon: float, before_tick=None,
                          tick_days: float = TICK_DAYS):
    """Tick the real sensor every `tick_days` over the replayed source and run what it asks for
    (one batched run: what the run's asset does, at the replay clock): (ticks, decisions as
    (seconds since T0, shards)). `before_tick(at)`: called before each tick."""
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("shards", ["a", "b", "c"])
    ticks = [T0 + timedelta(days=tick_days * k) for k in range(int(horizon // tick_days) + 1)]
    cursor, decided = None, []
    for at in ticks:
        source.seek(at=at)
        if before_tick is not None:
            before_tick(at)
        result = policy_tick(dg.build_sensor_context(instance=instance, cursor=cursor),
                             Fixed(rt), at)
        cursor = result.cursor
        policy = [r for r in result.run_requests if "freshness/shards" in r.tags]
        for retire in (r for r in result.run_requests if r not in policy):
            assert retire.run_key == f"retire-{retire.partition_key}"  # a shard gone whole
            assert retire.tags["freshness/gpu"] == "false"  # embeds nothing: no GPU asked
            assert sync(rt, [retire.partition_key], now=at).ok
        if policy:
            (request,) = policy  # one batched run
            shards = request.tags["freshness/shards"].split(",")
            decided.append(((at - T0).total_seconds(), shards))
            assert sync(rt, shards, now=at).ok
    return ticks, decided


def test_sensor_decisions_and_stale_rate_match_the_simulator(tmp_path, make_runtime):
    rng = np.random.default_rng(5)
    paths, snapshot, replay, horizon = write_change_log(tmp_path, rng)
    popularity = zipf_popularity(paths)
    source = ReplaySource(snapshot, replay, as_of_seq=0)
    rt = make_runtime(source=source, budget_gpu_seconds_per_day=BUDGET)
    assert sync(rt, now=T0).ok
    ticks, decided = replay_through_sensor(rt, source, horizon)

    log = ChangeLog.from_parquet(str(snapshot), str(replay), popularity=popularity,
                                 start=T0.timestamp())
    poll_s = np.array([(t - T0).total_seconds() for t in ticks])
    times, shards = adaptive(log, LoopConfig(BUDGET, CostModel()), poll_times=poll_s,
                             replan_days=0.0)  # the sensor plans at every tick
    simulated = [(float(t), [log.shard_names[i] for i in s]) for t, s in zip(times, shards)]
    assert decided == simulated and len(decided) >= 5

    report, _ = zipf_queries_report(rt, tmp_path, paths, popularity, rng, horizon)
    measured = report.scope("all")[0]["stale_rate"]
    predicted = evaluate(log, times, shards, CostModel()).stale_share
    error = math.sqrt(predicted * (1 - predicted) / QUERIES)
    assert 0.03 < predicted < 0.6
    assert abs(measured - predicted) <= 3 * error, (measured, predicted, error)
    assert pq.read_table(replay).num_rows == 36

    # The plan: for tight budgets (K > 0), the threshold the sensor's loop plans from its state
    # (rate history written by the polls above, traffic file) equals the one the simulator
    # plans from the same polls — the same arrivals, masses, costs and clock.
    write_known_traffic(rt, log)
    summaries, _ = cadence.observe(rt, rt.source.change_tokens(), {}, [])
    seen = []
    adaptive(log, LoopConfig(BUDGET, CostModel()), poll_times=poll_s, replan_days=0.0,
             planner=lambda config, inputs: seen.append(inputs) or plan_threshold(config, inputs))
    last = [i for i in seen if math.isclose(i.now_days, poll_s[-1] / DAY_S)][-1]
    for budget in (2.0, 5.0, 10.0):  # GPU s/day: 2 to 10 runs over the replay, K > 0
        config = LoopConfig(budget, CostModel())
        inputs = cadence.decide(summaries, ticks[-1], budget, rt.store, CostModel(),
                                learn=False, start=T0, state=rt.shard_state()).inputs
        sensor = plan_threshold(config, inputs)  # the plan, before the credit paces it
        simulated_plan = plan_threshold(config, last)
        assert 0 < sensor.threshold < math.inf, (budget, sensor)
        assert sensor.threshold == pytest.approx(simulated_plan.threshold, rel=1e-9), budget
        assert sensor.runs_budgeted == pytest.approx(simulated_plan.runs_budgeted), budget


def test_sensor_decisions_match_the_simulator_under_a_binding_credit(tmp_path, make_runtime):
    """With a budget that holds runs back, the credit decides when runs happen, and its spend is
    what the runs really cost as each run recorded it (here in tokens: deterministic). Given
    those recorded costs (`realized`), the simulator makes the same decisions as the sensor:
    the credit, the costs learned from the run records and the plan are one implementation."""
    rng = np.random.default_rng(5)
    paths, snapshot, replay, horizon = write_change_log(tmp_path, rng)
    popularity = zipf_popularity(paths)
    log = ChangeLog.from_parquet(str(snapshot), str(replay), popularity=popularity,
                                 start=T0.timestamp())
    source = ReplaySource(snapshot, replay, as_of_seq=0)
    budget = TOKENS_PER_DAY
    rt = make_runtime(source=source, budget_gpu_seconds_per_day=budget, cost_unit="tokens")
    write_known_traffic(rt, log)  # what recency writes from the request logs
    # the first build, on the replayed clock, before the loop starts (not part of its spend)
    assert sync(rt, now=T0 - timedelta(hours=1)).ok
    ticks, decided = replay_through_sensor(rt, source, horizon)

    records = [{**r, "day": (as_utc(r["finished_at"]) - T0).total_seconds() / DAY_S}
               for r in load_runs(rt.store)]
    assert {r["cost_unit"] for r in records} == {"tokens"}
    assert [r["day"] * DAY_S for r in records[1:]] == pytest.approx([t for t, _ in decided],
                                                                      abs=60)
    poll_s = np.array([(t - T0).total_seconds() for t in ticks])
    times, shards = adaptive(log, LoopConfig(budget, CostModel()), poll_times=poll_s,
                             replan_days=0.0, realized=records)
    simulated = [(float(t), [log.shard_names[i] for i in s]) for t, s in zip(times, shards)]
    assert decided == simulated
    # the credit did bind: the same replay with an ample budget runs more often, and the
    # tokens the loop spent never ran ahead of the budget accrued
    ample, _ = adaptive(log, LoopConfig(BUDGET, CostModel()), poll_times=poll_s,
                        replan_days=0.0)
    assert 2 <= len(decided) < len(ample), (len(decided), len(ample))
    print(f"binding credit: {len(decided)} runs ({len(ample)} with an ample budget)")
    spent = np.cumsum([run_cost_of(r) for r in records[1:]])
    assert (spent <= budget * np.array([r["day"] for r in records[1:]]) + 1e-9).all()


def write_changing_shards_log(folder, rng, grows_on: float = 7.0, apart: float = 0.0):
    """Shards whose size moves: `a` steady, `b` removed whole on day 12, `c` added on day 3
    and growing by three docs from day `grows_on`, `apart` days apart; edits everywhere while
    the docs exist."""
    docs = {"a": [f"a/doc{i}.md" for i in range(8)], "b": [f"b/doc{i}.md" for i in range(8)],
            "c": [f"c/doc{i}.md" for i in range(8)]}
    snapshot = [(0, T0, p, p[0], "add", f"{p} version 0") for p in docs["a"] + docs["b"]]
    events = [(3.0, p, "add") for p in docs["c"][:5]] + [(grows_on + k * apart, p, "add")
                                                          for k, p in enumerate(docs["c"][5:])]
    events += [(12.0, p, "delete") for p in docs["b"]]
    for t in rng.uniform(0.1, 19.5, 40):
        alive = docs["a"] + (docs["b"] if t < 12 else []) + \
            (docs["c"][:5] if t > 3 else []) + (docs["c"][5:] if t > grows_on + 2 * apart else [])
        events.append((float(t), str(rng.choice(alive)), "modify"))
    events.sort()
    changes = [(k + 1, T0 + timedelta(days=t), p, p[0], op,
                None if op == "delete" else f"{p} version {k + 1}")
               for k, (t, p, op) in enumerate(events)]
    for name, rows in (("snapshot", snapshot), ("replay", changes)):
        pq.write_table(pa.Table.from_pylist([dict(zip(SCHEMA.names, r)) for r in rows], SCHEMA),
                       folder / f"{name}.parquet")
    paths = docs["a"] + docs["b"] + docs["c"]
    return paths, folder / "snapshot.parquet", folder / "replay.parquet", events[-1][0]


def test_the_plan_weighs_each_change_as_its_poll_saw_the_shard(tmp_path, make_runtime):
    """A change is worth its shard's mean share per doc as the poll that saw it found the shard
    (its docs and the retrieval share recency had measured then), whatever the shard became
    later. Before, every past change was re-weighed at the shard's size now: a shard removed
    later weighed each of its past changes at its whole share, and the plan, expecting far more
    runs than the rule makes, set the threshold tens of times too high (PowerShell-Docs: 0.6
    of the budget spent, 3x the stale retrievals). Sensor and simulator plan the same."""
    rng = np.random.default_rng(3)
    paths, snapshot, replay, horizon = write_changing_shards_log(tmp_path, rng)
    log = ChangeLog.from_parquet(str(snapshot), str(replay), popularity=zipf_popularity(paths),
                                 start=T0.timestamp())
    q = log.known_traffic()
    source = ReplaySource(snapshot, replay, as_of_seq=0)
    rt = make_runtime(source=source, budget_gpu_seconds_per_day=BUDGET)

    def measured_traffic(at):  # what recency measures: the shares of the docs that exist
        alive = np.zeros(len(q), bool)
        alive[log.initial_docs] = True
        for t, d, gone in zip(log.times, log.docs, log.deletes):
            if t <= (at - T0).total_seconds():
                alive[d] = not gone
        write_traffic(rt.store, Traffic(
            {s: float(q[alive & (log.doc_shard == i)].sum())
             for i, s in enumerate(log.shard_names) if (alive & (log.doc_shard == i)).any()},
            {s: {log.doc_ids[d]: float(q[d]) for d in np.flatnonzero(alive & (log.doc_shard == i))}
             for i, s in enumerate(log.shard_names)}))

    measured_traffic(T0)
    assert sync(rt, now=T0).ok
    ticks, decided = replay_through_sensor(rt, source, horizon, before_tick=measured_traffic)
    assert len(decided) >= 5
    summaries, _ = cadence.observe(rt, rt.source.change_tokens(), {}, [])
    assert "b" not in {s.shard for s in summaries if s.docs}  # removed: no docs now
    poll_s = np.array([(t - T0).total_seconds() for t in ticks])
    seen = []
    times, shards = adaptive(
        log, LoopConfig(BUDGET, CostModel()), poll_times=poll_s, replan_days=0.0,
        planner=lambda config, inputs: seen.append(inputs) or plan_threshold(config, inputs))
    simulated = [(float(t), [log.shard_names[i] for i in s]) for t, s in zip(times, shards)]
    assert decided == simulated  # `b`, retired by the sensor, rides in no run of either
    last = [i for i in seen if math.isclose(i.now_days, poll_s[-1] / DAY_S)][-1]
    # `a` (8 docs throughout) has the highest mean share per doc; before, each of `b`'s past
    # changes weighed b's whole share (0.18) once b was gone, twice a's mean
    densest = float(q[log.doc_shard == log.shard_names.index("a")].sum()) / 8
    assert last.arrival_rate.max() == pytest.approx(densest)
    for budget in (2.0, 5.0, 10.0):
        config = LoopConfig(budget, CostModel())
        inputs = cadence.decide(summaries, ticks[-1], budget, rt.store, CostModel(),
                                learn=False, start=T0, state=rt.shard_state()).inputs
        assert sorted(inputs.arrival_rate) == pytest.approx(sorted(last.arrival_rate))
        sensor, simulated = plan_threshold(config, inputs), plan_threshold(config, last)
        assert 0 < sensor.threshold < math.inf, (budget, sensor)
        assert sensor.threshold == pytest.approx(simulated.threshold, rel=1e-9), budget


def test_sensor_decisions_match_the_simulator_when_shares_are_learned(tmp_path, make_runtime,
                                                                     monkeypatch):
    """Shares learned from request logs, as a deployment learns them: before each tick the days
    of retrievals a query stream drew over the docs the sensor's index holds are written through
    `record_days` (what recency keeps), and the simulator, learning from the same seeded stream
    (`LearnedShares`), makes the same decisions under a binding credit. Shard `c` is added on
    day 3 and grows on day 7: its adds are pending while the index does not hold them, and both
    weigh them at the shard's mean share per doc (`pending_share`). Ticks every half day, so
    some see adds made since the last day's end: the pending stale rates are the same at every
    tick, not only the decisions."""
    rng = np.random.default_rng(5)
    paths, snapshot, replay, horizon = write_changing_shards_log(tmp_path, rng, grows_on=7.2,
                                                                 apart=0.1)
    log = ChangeLog.from_parquet(str(snapshot), str(replay), popularity=zipf_popularity(paths),
                                 start=T0.timestamp())
    source = ReplaySource(snapshot, replay, as_of_seq=0)
    rt = make_runtime(source=source, budget_gpu_seconds_per_day=TOKENS_PER_DAY,
                      cost_unit="tokens")
    index = {d: i for i, d in enumerate(log.doc_ids)}
    stream = LearnedShares(log, RETRIEVALS_PER_DAY, seed=11)  # what the request logs show
    pending_adds = []

    def request_logs(at):
        day = (at - T0) // timedelta(days=1)
        alive = np.zeros(len(log.doc_ids), bool)
        alive[log.initial_docs] = True
        for t, d, gone in zip(log.times, log.docs, log.deletes):
            if t <= (at - T0).total_seconds():
                alive[d] = not gone
        indexed = np.zeros(len(log.doc_ids), bool)
        state = rt.shard_state()
        for shard in state.shards():
            indexed[[index[d] for d in state.load(shard).chunks["doc_id"].to_pylist()]] = True
        pending_adds.append(int((alive & ~indexed).sum()) if stream.day else 0)
        if not stream.advance(day, indexed & alive, alive):
            return
        rows = [(T0.date() + timedelta(days=stream.day - len(stream.counts) + k),
                 log.shard_names[log.doc_shard[d]], log.doc_ids[d], int(n))
                for k, counts in enumerate(stream.counts) for d, n in enumerate(counts) if n]
        record_days(rt.store, pa.table(
            {"day": pa.array([r[0] for r in rows], pa.date32()), "shard": [r[1] for r in rows],
             "doc_id": [r[2] for r in rows], "retrievals": pa.array([r[3] for r in rows])}))

    sensor_rates, simulated_rates = {}, {}

    def sensor_loop(config, inputs, plan=None):  # what the sensor's tick decides on
        sensor_rates.setdefault(round(inputs.now_days - T0.timestamp() / DAY_S, 6),
                                dict(zip(inputs.shards, inputs.pending_rate)))
        return loop_decide(config, inputs, plan)

    def simulated_plan(config, inputs):
        simulated_rates.setdefault(round(inputs.now_days, 6),
                                   dict(zip(inputs.shards, inputs.pending_rate)))
        return plan_threshold(config, inputs)

    loop_decide = cadence.loop_decide
    monkeypatch.setattr(cadence, "loop_decide", sensor_loop)
    assert sync(rt, now=T0 - timedelta(hours=1)).ok
    ticks, decided = replay_through_sensor(rt, source, horizon, before_tick=request_logs,
                                           tick_days=0.5)
    assert max(pending_adds) > 0  # adds were pending while the shares were learned
    records = [{**r, "day": (as_utc(r["finished_at"]) - T0).total_seconds() / DAY_S}
               for r in load_runs(rt.store)]
    poll_s = np.array([(t - T0).total_seconds() for t in ticks])
    assert [r["shards"] for r in records if not r["chunks_embedded"]] == [[]]  # b retired
    times, shards = adaptive(log, LoopConfig(TOKENS_PER_DAY, CostModel()), poll_times=poll_s,
                             replan_days=0.0, realized=records, planner=simulated_plan,
                             learned=LearnedShares(log, RETRIEVALS_PER_DAY, seed=11))
    simulated = [(float(t), [log.shard_names[i] for i in s]) for t, s in zip(times, shards)]
    assert decided == simulated and len(decided) >= 3, (decided, simulated)
    assert sensor_rates.keys() == simulated_rates.keys()
    for day, rates in sensor_rates.items():
        assert simulated_rates[day] == pytest.approx(  # shards not listed: nothing pending
            {**dict.fromkeys(simulated_rates[day], 0.0), **rates}, rel=1e-9, abs=1e-12), day
    ample, _ = adaptive(log, LoopConfig(BUDGET, CostModel()), poll_times=poll_s,
                        replan_days=0.0, learned=LearnedShares(log, RETRIEVALS_PER_DAY, seed=11))
    assert len(decided) < len(ample)  # the credit did bind
