"""The cadence decision: first builds, piggybacked batches, traffic shares, spend correction."""

from datetime import datetime, timedelta, timezone

from freshness.pipeline.detect import PendingSummary
from freshness.policy.cadence import decide
from freshness.policy.planner import CostModel
from freshness.state.runs import record_run
from freshness.state.store import StateStore

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)
DAY = 86400.0


def summary(shard: str, docs: int, pending: int, waited_days: float, version: int = 3):
    since = (NOW - timedelta(days=waited_days)).timestamp() / DAY
    return PendingSummary(
        shard, 0, pending, 0, docs - pending, 0, True, NOW, version,
        NOW - timedelta(days=waited_days) if pending else None, NOW, docs=docs,
        pending_since_sum_days=pending * since, rate_per_doc_day=0.01)


def test_a_never_indexed_shard_is_due_and_pending_shards_ride_along(tmp_path):
    store = StateStore(tmp_path)
    shards = [summary("new", 10, 10, 0.0, version=0), summary("busy", 100, 2, 0.001),
              summary("quiet", 100, 0, 0.0)]
    decision = decide(shards, NOW, 1e-6, store)
    reasons = {v.shard: v.reason for v in decision.verdicts}
    assert reasons["new"] == "not indexed yet" and reasons["quiet"] == "no pending changes"
    assert decision.run_shards == ["new", "busy"]  # busy is not due but shares the run
    alone = decide(shards, NOW, 1e-6, store, batch=False)
    assert alone.run_shards == ["new"]


def test_traffic_shares_weigh_the_debt(tmp_path):
    store = StateStore(tmp_path)
    shards = [summary("read", 100, 5, 2.0), summary("unread", 100, 5, 2.0)]
    store.write_json({"read": 1.0, "unread": 0.0}, "traffic", "shares.json")
    debts = {v.shard: v.debt for v in decide(shards, NOW, 5.0, store).verdicts}
    assert debts["read"] > 5 * debts["unread"] > 0  # the unread shard keeps a 10 % prior


def test_measured_spend_corrects_the_threshold(tmp_path):
    store, shards = StateStore(tmp_path), [summary("s", 1000, 3, 0.5)]
    record_run(store, ["s"], 500, 400.0, 10.0, 4000.0, "cpu")  # 4000 s spent just now
    today = datetime.now(timezone.utc)
    over = decide(shards, today, 100.0, store, CostModel())  # 40x the budget in 24 h
    later = decide(shards, today + timedelta(days=2), 100.0, store, CostModel())  # same costs
    assert over.plan.debt_threshold > 5 * later.plan.debt_threshold
