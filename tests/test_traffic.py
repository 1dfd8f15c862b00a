"""Retrieval shares learned over a window of days (`freshness.state.traffic`)."""

from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from freshness.state.store import StateStore
from freshness.state.traffic import (
    DAYS_DIR,
    HALF_LIFE_DAYS,
    WINDOW_DAYS,
    bounded,
    day_weights,
    doc_shares,
    read_traffic,
    record_days,
    top_docs,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0, 3.0]), max_size=40), st.integers(0, 45),
       st.randoms(use_true_random=False))
def test_the_top_docs_are_the_first_of_the_full_order(counts, top_k, rnd):
    """`top_docs` partitions before it sorts: the same docs, in the same order, as sorting all
    of them by (most retrieved, rank), ties at the cut included; none nobody retrieved."""
    counts = np.array(counts)
    rank = np.array(rnd.sample(range(len(counts)), len(counts)), dtype=np.int64)
    order = np.lexsort((rank, -counts))[:top_k]
    assert top_docs(counts, top_k, rank).tolist() == order[counts[order] > 0].tolist()


def day_counts(day: date, rows: list[tuple[str, str, int]]) -> pa.Table:
    return pa.table({"day": pa.array([day] * len(rows), pa.date32()),
                     "shard": [r[0] for r in rows], "doc_id": [r[1] for r in rows],
                     "retrievals": pa.array([r[2] for r in rows], pa.int64())})


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=30), st.integers(1, 8),
       st.integers(0, 3), st.randoms(use_true_random=False))
def test_the_array_form_is_the_files_form(counts, top_k, extra, rnd):
    """`doc_shares` (the simulator's) gives each doc what `bounded(...).doc_weights` (the
    sensor's) gives it, whatever the counts, ties and docs nobody retrieved."""
    shard_of = np.array([rnd.randrange(3) for _ in counts])
    names = [f"s{s}" for s in range(3)]
    shard_docs = np.bincount(shard_of, minlength=3) + extra  # docs the log has not seen retrieved
    table = pa.table({"shard": [names[s] for s in shard_of],
                      "doc_id": [f"d{i:03d}" for i in range(len(counts))],
                      "retrievals": pa.array(counts, pa.int64())})
    traffic = bounded(table, top_k)
    rank = np.argsort(np.lexsort((np.arange(len(counts)), shard_of)))  # (shard, doc_id) order
    arrays = doc_shares(np.array(counts, float), shard_of, shard_docs, top_k, rank)
    for s in range(3):
        docs = np.flatnonzero(shard_of == s)
        files = traffic.doc_weights(names[s], [f"d{i:03d}" for i in docs], int(shard_docs[s]))
        np.testing.assert_allclose(arrays[docs], files, atol=1e-12)


def test_days_are_weighed_by_age_and_a_day_is_replaced_not_added(tmp_path):
    store = StateStore(tmp_path)
    today = date(2026, 3, 1)
    week_ago = today - timedelta(days=int(HALF_LIFE_DAYS))
    record_days(store, day_counts(week_ago, [("a", "a/1", 100)]))
    traffic = record_days(store, day_counts(today, [("b", "b/1", 10)]))
    # a week-old day weighs half: 50 against 10
    assert traffic.shards == pytest.approx({"a": 50 / 60, "b": 10 / 60})
    assert traffic.retrievals == pytest.approx(60)
    # a later report of today (it saw more of it) replaces today's counts
    record_days(store, day_counts(today, [("b", "b/1", 50)]))
    traffic = read_traffic(store)
    assert traffic.shards == pytest.approx({"a": 0.5, "b": 0.5})
    assert traffic.top_docs == {"a": {"a/1": pytest.approx(0.5)},
                                "b": {"b/1": pytest.approx(0.5)}}
    # a report of a day out of the window: the old days are dropped, nothing else counts
    later = today + timedelta(days=WINDOW_DAYS)
    traffic = record_days(store, day_counts(later, [("c", "c/1", 3)]))
    assert traffic.shards == {"c": 1.0} and traffic.retrievals == pytest.approx(3)
    assert store.list_dir(*DAYS_DIR) == [f"{later.isoformat()}.parquet"]


def test_a_report_over_several_days_keeps_each_day(tmp_path):
    store = StateStore(tmp_path)
    first = date(2026, 3, 1)
    counts = pa.concat_tables([day_counts(first, [("a", "a/1", 40)]),
                               day_counts(first + timedelta(days=1), [("a", "a/1", 20),
                                                                      ("b", "b/1", 20)])])
    traffic = record_days(store, counts)
    w = float(day_weights(1))
    assert traffic.retrievals == pytest.approx(40 * w + 40)
    assert traffic.shards["a"] == pytest.approx((40 * w + 20) / (40 * w + 40))
    assert len(store.list_dir(*DAYS_DIR)) == 2


def test_day_weights_halve_every_half_life_and_end_with_the_window():
    ages = np.array([0, HALF_LIFE_DAYS, 2 * HALF_LIFE_DAYS, WINDOW_DAYS - 1, WINDOW_DAYS, -1])
    weights = day_weights(ages)
    assert weights[:3] == pytest.approx([1.0, 0.5, 0.25])
    assert weights[3] > 0 and weights[4] == 0 and weights[5] == 0
