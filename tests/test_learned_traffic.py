"""The simulated loop learns retrieval shares as a deployment does (`policy.learned_traffic`)."""

import tempfile
from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from freshness.policy.control import LoopConfig
from freshness.policy.learned_traffic import LearnedShares
from freshness.policy.planner import CostModel
from freshness.policy.simulator import ChangeLog, adaptive, evaluate, simulate
from freshness.state.store import StateStore
from freshness.state.traffic import read_traffic, record_days
from tests.test_simulate import shrinking_logs, synthetic_log, tables


@settings(max_examples=25, deadline=None)
@given(shrinking_logs(), st.integers(1, 40), st.integers(0, 3), st.integers(1, 4))
def test_the_simulated_shares_are_what_the_traffic_files_give(log, days, top_k, seed):
    """Each day the simulator samples is written as recency writes a day; the traffic file read
    back weighs every doc as the simulated loop does (one implementation: the day weights, the
    top docs and the per-shard remainders of `freshness.state.traffic`)."""
    learned = LearnedShares(log, 30.0, seed=seed, top_k=top_k)
    rng = np.random.default_rng(seed)
    listed = rng.random(len(log.popularity)) < 0.7
    indexed = listed & (rng.random(len(listed)) < 0.8)
    assert learned.advance(days, indexed, listed)
    with tempfile.TemporaryDirectory() as tmp:
        store = StateStore(tmp)
        first = date(2026, 1, 1)
        for i, counts in enumerate(learned.counts):
            day = first + timedelta(days=days - len(learned.counts) + i)
            retrieved = np.flatnonzero(counts > 0)
            record_days(store, pa.table({
                "day": pa.array([day] * len(retrieved), pa.date32()),
                "shard": [log.shard_names[log.doc_shard[d]] for d in retrieved],
                "doc_id": [log.doc_ids[d] for d in retrieved],
                "retrievals": pa.array(counts[retrieved].astype(int), pa.int64())}), top_k)
        traffic = read_traffic(store)
    if not learned.retrievals:
        assert traffic is None or not traffic.shards
        return
    assert traffic.retrievals == pytest.approx(learned.retrievals)
    shard_docs = np.bincount(log.doc_shard[listed], minlength=len(log.shard_names))
    for s, name in enumerate(log.shard_names):
        assert traffic.shards.get(name, 0.0) == pytest.approx(learned.shard_share[s])
        docs = np.flatnonzero(log.doc_shard == s)
        files = traffic.doc_weights(name, [log.doc_ids[d] for d in docs], int(shard_docs[s]))
        np.testing.assert_allclose(learned.q[docs], files, atol=1e-12)
    # nobody retrieves a doc the index does not hold
    assert not np.array(learned.counts)[:, ~indexed].any()


def test_with_plenty_of_traffic_the_learned_shares_are_the_popularity():
    log = synthetic_log()
    learned = LearnedShares(log, 1e7, top_k=len(log.popularity))
    everything = np.ones(len(log.popularity), bool)
    learned.advance(30, everything, everything)
    np.testing.assert_allclose(learned.q, log.popularity / log.popularity.sum(), rtol=0.05)
    assert learned.shard_share.sum() == pytest.approx(1.0)


def test_a_loop_that_learns_stays_within_the_budget_and_replays_the_same():
    log, costs = synthetic_log(), CostModel(10, 0.01, 1)
    ceiling = simulate(log, "immediate", 0, costs)
    for fraction in (0.05, 0.2):
        budget = ceiling.gpu_seconds_per_day * fraction
        result = simulate(log, "adaptive", budget, costs, budget, retrievals_per_day=500,
                          query_seed=1)
        assert result.gpu_seconds_per_day <= budget * (1 + 1e-9) and result.runs > 0
        # the same loop with the same stream decides the same (the stream is seeded)
        again = simulate(log, "adaptive", budget, costs, budget, retrievals_per_day=500,
                         query_seed=1)
        assert again.stale_share == result.stale_share


def test_days_without_a_run_leave_added_docs_out_of_the_request_logs():
    snap, changes = tables([("s/a", "s"), ("s/b", "s")],
                           [(1.5, "s/c", "s", "add"), (2.5, "s/a", "s", "modify")])
    log = ChangeLog.from_tables(snap, changes, popularity={"s/a": 1, "s/b": 1, "s/c": 8})
    learned = LearnedShares(log, 1000.0)
    # no budget: nothing runs after the snapshot, so the added doc is never retrieved
    times, _ = adaptive(log, LoopConfig(0.0, CostModel(10, 0, 1, 0)), learned=learned)
    assert len(times) == 0
    c = log.doc_ids.index("s/c")
    assert learned.day >= 2 and not np.array(learned.counts)[:, c].any()
    result = evaluate(log, times, [], CostModel(10, 0, 1, 0))
    assert result.stale_share > 0
