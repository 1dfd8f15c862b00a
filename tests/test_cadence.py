"""The control loop: first builds, ride-along batches, per-doc traffic, min_interval, budget."""

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pytest

from freshness.pipeline.detect import PendingSummary
from freshness.policy.cadence import decide
from freshness.policy.control import LoopConfig, LoopInputs, LoopPlan, credit
from freshness.policy.control import decide as loop_decide
from freshness.policy.planner import CostModel
from freshness.state.manifest import ShardStateStore
from freshness.state.runs import record_run
from freshness.state.store import StateStore
from freshness.state.traffic import Traffic, bounded, read_traffic, write_traffic

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
DAY = 86400.0


def summary(shard: str, docs: int, pending: int, waited_days: float, version: int = 3):
    since = (NOW - timedelta(days=waited_days)).timestamp() / DAY
    return PendingSummary(
        shard, 0, pending, 0, docs - pending, 0, True, NOW, version,
        NOW - timedelta(days=waited_days) if pending else None,
        NOW - timedelta(days=waited_days) if pending else None, docs=docs,
        pending_since_sum_days=pending * since, rate_per_doc_day=0.01)


def test_a_never_indexed_shard_is_due_within_the_budget_and_pending_shards_ride_along(tmp_path):
    store = StateStore(tmp_path)
    now = datetime.now(timezone.utc)
    shards = [summary("new", 10, 10, 0.0, version=0), summary("busy", 100, 2, 0.001),
              summary("quiet", 100, 0, 0.0)]
    # a deployment's initial build: no shard indexed yet, due at once whatever the budget
    initial = decide([summary("new", 10, 10, 0.0, version=0)], now, 1e-6, store)
    assert initial.run_shards == ["new"] and initial.verdicts[0].reason == "not indexed yet"
    record_run(store, ["busy"], 500, 400.0, 10.0, 1000.0, "cpu")  # the budget is spent
    spent = decide(shards, now, 1e-6, store)
    reasons = {v.shard: v.reason for v in spent.verdicts}
    assert spent.run_shards == []  # a new shard jumps the threshold, not the budget
    assert reasons["new"] == "not indexed yet: waiting for the budget's credit"
    assert spent.loop.next_check_days < math.inf  # woken when the credit covers the build
    decision = decide(shards, now, 1e6, store, start=now - timedelta(days=1))
    reasons = {v.shard: v.reason for v in decision.verdicts}
    assert reasons["new"] == "not indexed yet" and reasons["quiet"] == "no pending changes"
    assert decision.run_shards == ["busy", "new"]  # busy is not due but shares the run
    alone = decide(shards, now, 1e6, store, batch=False, start=now - timedelta(days=1))
    assert "new" in alone.run_shards  # unbatched: each shard runs on its own verdict
    assert all(v.due for v in alone.verdicts if v.shard in alone.run_shards)


def inputs(rate, pending, last_run=None, now=10.0, arrivals=(9.0,), spent=(), start=0.0):
    n = len(rate)
    return LoopInputs(
        [f"s{i}" for i in range(n)], np.array(pending, float), np.array(rate, float),
        np.where(np.array(pending) > 0, 9.0, np.nan), np.array(last_run or [np.nan] * n),
        np.zeros(n, bool), now, start, np.array([d for d, _ in spent]),
        np.array([c for _, c in spent]), np.array(arrivals, float),
        np.ones(len(arrivals)))


def test_the_rule_weighs_the_stale_rate_by_the_quiet_time():
    config = LoopConfig(100.0, CostModel(20, 0, 1, 0))
    plan = LoopPlan(0.5, 10, 10.0)
    paced = -80.2  # credit after the run = the pacing reserve (90 days): the threshold holds
    # rate 0.4 quiet for 1 day: 0.4 < 0.5, wait until 9 + 0.5 / 0.4 = 10.25
    waiting = loop_decide(config, inputs([0.4, 0.0], [3, 0], start=paced), plan)
    assert waiting.plan.threshold == pytest.approx(0.5)
    assert not waiting.run_shards and abs(waiting.next_check_days - 10.25) < 1e-6
    ready = loop_decide(config, inputs([0.4, 0.2], [3, 1], start=paced), plan)
    assert ready.run_shards == ["s0", "s1"]


def test_min_interval_holds_a_shard_back_and_wakes_when_it_expires():
    config = LoopConfig(100.0, CostModel(20, 0, 1, 0), min_interval_days=0.5)
    plan = LoopPlan(0.1, 10, 10.0)
    held = loop_decide(config, inputs([0.6, 0.6], [2, 2], last_run=[9.8, 1.0]), plan)
    assert held.run_shards == ["s1"] and held.reasons[0] == "min_interval not reached"
    only = loop_decide(config, inputs([0.6, 0.0], [2, 0], last_run=[9.8, 1.0]), plan)
    assert not only.run_shards and abs(only.next_check_days - 10.3) < 1e-9


def test_pacing_raises_the_threshold_as_credit_runs_low():
    config = LoopConfig(100.0, CostModel(20, 0, 1, 0))
    plan = LoopPlan(0.5, 10, 10.0)
    flush = loop_decide(config, inputs([0.4], [3], start=-170.2), plan).plan.threshold
    low = loop_decide(config, inputs([0.4], [3], start=0.0), plan).plan.threshold
    assert flush == pytest.approx(0.25) and low > 0.5  # a reserve above it: halved


def test_credit_never_lets_spend_run_ahead_of_the_budget():
    config = LoopConfig(10.0, CostModel(20, 0, 1, 0))
    plan = LoopPlan(0.0, 10, 10.0)
    # 10 days × 10 s/day = 100 s accrued, 90 s spent: 10 s left; a run costs 20 s
    broke = inputs([1.0], [1], spent=[(5.0, 90.0)])
    assert credit(config, broke) == 10.0
    decision = loop_decide(config, broke, plan)
    assert not decision.run_shards and abs(decision.next_check_days - 11.0) < 1e-6


def test_per_doc_traffic_weighs_the_pending_docs(tmp_path):
    store = StateStore(tmp_path)
    state = ShardStateStore(store, "chunks")
    shards = [summary("a", 100, 1, 2.0), summary("b", 100, 1, 2.0)]
    for shard, doc in (("a", "a/hot.md"), ("b", "b/cold.md")):
        state.write_pending_docs(shard, pa.table({"doc_id": [doc], "since": pa.array(
            [NOW - timedelta(days=2)], pa.timestamp("us", "UTC"))}))
    counts = pa.table({"shard": ["a", "a", "b"], "doc_id": ["a/hot.md", "a/x.md", "b/cold.md"],
                       "retrievals": [90, 5, 5]})
    write_traffic(store, bounded(counts, top_k=2))
    traffic = read_traffic(store)
    assert traffic.top_docs == {"a": {"a/hot.md": 0.9, "a/x.md": 0.05}}
    assert traffic.shards == pytest.approx({"a": 0.95, "b": 0.05})
    assert traffic.retrievals == 100
    rates = {v.shard: v.stale_rate for v in decide(shards, NOW, 5.0, store, state=state).verdicts}
    uniform = 1 / 200  # a uniform prior per doc (docs nobody retrieved yet), worth 100
    mix = 100 / (100 + 100)  # retrievals: as much as the 100 logged ones
    assert rates["a"] == pytest.approx((1 - mix) * 0.9 + mix * uniform)
    assert rates["b"] == pytest.approx((1 - mix) * 0.05 / 100 + mix * uniform)  # the remainder
    # with many more logged retrievals the measured shares decide
    write_traffic(store, bounded(counts.set_column(2, "retrievals", pa.array([9000, 500, 500])),
                                 top_k=2))
    rates = {v.shard: v.stale_rate for v in decide(shards, NOW, 5.0, store, state=state).verdicts}
    mix = 100 / (10_000 + 100)
    assert rates["a"] == pytest.approx((1 - mix) * 0.9 + mix * uniform)
    assert rates["a"] / rates["b"] > 100


def test_an_added_doc_is_worth_its_shards_mean_share_until_request_logs_can_show_it(tmp_path):
    """Nobody can retrieve a doc the index does not hold yet, so learned shares know nothing of
    it: it counts at its shard's mean share per doc, not at the tail the top docs leave."""
    store = StateStore(tmp_path)
    state = ShardStateStore(store, "chunks")
    since = pa.array([NOW - timedelta(days=2)] * 2, pa.timestamp("us", "UTC"))
    state.write_pending_docs("a", pa.table({"doc_id": ["a/new.md", "a/tail.md"], "since": since,
                                            "change": ["added", "modified"]}))
    shards = [summary("a", 100, 2, 2.0)]
    counts = pa.table({"shard": ["a", "a", "a"], "doc_id": ["a/hot.md", "a/tail.md", "a/x.md"],
                       "retrievals": [800_000, 100_000, 100_000]})
    write_traffic(store, bounded(counts, top_k=1))  # a/hot.md keeps its own share
    mix = 100 / (1_000_000 + 100)
    rate = decide(shards, NOW, 5.0, store, state=state).verdicts[0].stale_rate
    mean, tail = 1.0 / 100, 0.2 / 99  # a's share over its 100 docs; the rest over 99
    assert rate == pytest.approx((1 - mix) * (mean + tail) + mix * 2 / 100)
    # an older pending-docs file (no `change` kept): every doc at its measured share
    state.write_pending_docs("a", pa.table({"doc_id": ["a/new.md", "a/tail.md"],
                                            "since": since}))
    assert state.read_pending_docs("a")["change"].null_count == 2
    rate = decide(shards, NOW, 5.0, store, state=state).verdicts[0].stale_rate
    assert rate == pytest.approx((1 - mix) * 2 * tail + mix * 2 / 100)
    # exact shares (given for every doc, as the simulator's known popularity) are taken as given
    write_traffic(store, Traffic({"a": 1.0}, {"a": {"a/hot.md": 0.8, "a/new.md": 0.1}}))
    state.write_pending_docs("a", pa.table({"doc_id": ["a/new.md", "a/tail.md"], "since": since,
                                            "change": ["added", "modified"]}))
    rate = decide(shards, NOW, 5.0, store, state=state).verdicts[0].stale_rate
    assert rate == pytest.approx(0.1 + 0.1 / 98)


def test_an_old_per_shard_traffic_file_is_still_read(tmp_path):
    store = StateStore(tmp_path)
    store.write_json({"a": 0.7, "b": 0.3}, "traffic", "shares.json")
    assert read_traffic(store) == Traffic({"a": 0.7, "b": 0.3})


def test_runs_recorded_for_a_shard_set_its_last_run(tmp_path):
    store = StateStore(tmp_path)
    record_run(store, ["s"], 500, 400.0, 10.0, 30.0, "cpu")
    today = datetime.now(timezone.utc)
    decision = decide([summary("s", 1000, 3, 0.0)], today, 1e6, store,
                      min_interval_days=1.0)
    assert decision.verdicts[0].reason == "min_interval not reached"


def test_the_credit_charges_runs_in_the_budget_unit(tmp_path):
    """With FRESHNESS_COST_UNIT=tokens the budget is tokens a day and a run is charged its
    tokens, not its wall seconds (which would leave a token budget almost never spent)."""
    store = StateStore(tmp_path)
    record_run(store, ["s"], 50, 4.0, 1.0, 6.0, "cpu", tokens=90_000, cost_unit="tokens")
    now = datetime.now(timezone.utc) + timedelta(days=1)
    shards = [summary("s", 100, 5, 0.5)]
    loop = decide(shards, now, 100_000, store, CostModel(0.0, 100.0), learn=False,
                  start=now - timedelta(days=2)).loop
    assert loop.credit_s == pytest.approx(2 * 100_000 - 90_000, rel=1e-3)
