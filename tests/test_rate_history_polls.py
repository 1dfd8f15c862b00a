"""The rate history keeps its 90-day window however often a shard is polled: quiet polls extend
one row (up to a day) instead of adding one each, and that loses nothing — the rate estimate and
the changes the policy plans on are the same as from every poll kept."""

from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pytest

import freshness.state.rate_history as rate_history
from freshness.sources.base import LISTING_SCHEMA, Listing
from freshness.state.rate_history import RateHistory
from freshness.state.store import StateStore

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def listing(now: datetime, versions: list[int]) -> Listing:
    docs = pa.table({"doc_id": [f"d{i}" for i in range(len(versions))],
                     "doc_hash": [f"h{i}-{v}" for i, v in enumerate(versions)],
                     "updated_at": pa.array([T0] * len(versions), LISTING_SCHEMA[2].type)},
                    LISTING_SCHEMA)
    return Listing("s", docs, now)


def replay(store: StateStore, rng: np.random.Generator, polls: int, step_s: float,
           p_change: float) -> list[tuple[datetime, int]]:
    """Polls `step_s` apart; before each, every doc changes with probability `p_change`."""
    versions, seen = [0] * 20, []
    history = RateHistory(store)
    for k in range(polls):
        changed = rng.random(len(versions)) < p_change
        versions = [v + int(c) for v, c in zip(versions, changed)]
        now = T0 + timedelta(seconds=step_s * (k + 1))
        point = history.record(listing(now, versions))
        seen.append((now, point.changed))
    return seen


@pytest.mark.parametrize("seed", [0, 1])
def test_merged_quiet_polls_lose_nothing(tmp_path, seed, monkeypatch):
    rng = np.random.default_rng(seed)
    p_change = float(rng.uniform(2e-4, 2e-3))
    merged = StateStore(str(tmp_path / "merged"))
    every = StateStore(str(tmp_path / "every"))
    polls = replay(merged, np.random.default_rng(seed + 10), 500, 120.0, p_change)
    monkeypatch.setattr(rate_history, "MERGE_DAYS", 0.0)  # the reference: one row per poll
    assert polls == replay(every, np.random.default_rng(seed + 10), 500, 120.0, p_change)

    a, b = RateHistory(merged).load("s"), RateHistory(every).load("s")
    assert b.num_rows == 500 and a.num_rows < b.num_rows  # fewer rows ...
    now = polls[-1][0]
    assert RateHistory(merged).estimate(a, now) == pytest.approx(  # ... the same estimate
        RateHistory(every).estimate(b, now), rel=1e-9)
    assert a["changed"].to_pylist() and sum(a["changed"].to_pylist()) == \
        sum(b["changed"].to_pylist())  # and the same changes at the same polls
    changes = [(t, n) for t, n in zip(b["polled_at"].to_pylist(), b["changed"].to_pylist()) if n]
    assert changes == [(t, n) for t, n in zip(a["polled_at"].to_pylist(),
                                                a["changed"].to_pylist()) if n]
    assert sum(a["interval_days"].to_pylist()) == pytest.approx(
        sum(b["interval_days"].to_pylist()))


def test_a_pending_shard_polled_often_keeps_its_history(tmp_path, monkeypatch):
    """A pending shard is re-polled every 30 s (2,880 polls a day): one row per poll filled
    MAX_ROWS (5,000) in 1.7 days. Scaled down: 500 polls over 3.5 days, MAX_ROWS 50."""
    monkeypatch.setattr(rate_history, "MAX_ROWS", 50)
    store = StateStore(str(tmp_path / "state"))
    polls = replay(store, np.random.default_rng(3), 500, 600.0, 1e-3)
    rows = RateHistory(store).load("s")
    covered_from = rows["polled_at"][0].as_py() - timedelta(
        days=rows["interval_days"][0].as_py())
    assert covered_from == T0  # nothing dropped: the first row still starts at the first poll
    assert rows["polled_at"][-1].as_py() == polls[-1][0]
    assert sum(n for _, n in polls) == sum(rows["changed"].to_pylist())


def test_a_history_from_before_shard_share_loads_with_the_column_null(tmp_path):
    """Rate histories written before polls recorded the shard's retrieval share still load
    (the plan then weighs their changes at the share now) and grow with the new column."""
    store = StateStore(str(tmp_path / "state"))
    old = pa.schema([f for f in rate_history.RATE_SCHEMA if f.name != "shard_share"])
    rows = [{"polled_at": T0, "interval_days": 1.0, "docs": 4, "changed": 2,
             "rate_per_doc_day": 0.5, "cusum": 0.0, "spike": False}]
    store.write_table(pa.Table.from_pylist(rows, old), *rate_history.layout.rate_history_path("s"))
    history = RateHistory(store)
    loaded = history.load("s")
    assert loaded.schema == rate_history.RATE_SCHEMA
    assert loaded["shard_share"].to_pylist() == [None] and loaded["changed"].to_pylist() == [2]
    docs = pa.Table.from_pylist([{"doc_id": "s/a.md", "doc_hash": "h",
                                  "updated_at": T0 + timedelta(days=2)}], LISTING_SCHEMA)
    history.record(Listing("s", docs, T0 + timedelta(days=2), complete=True), shard_share=0.25)
    assert history.load("s")["shard_share"].to_pylist() == [None, 0.25]
