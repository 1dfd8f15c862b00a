"""Recency in DuckDB: the as-of join picks the version live at query time; ages, lags, stale."""

from datetime import datetime, timedelta, timezone

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from freshness.errors import SourceError
from freshness.recency.logs import RETRIEVALS_SCHEMA
from freshness.recency.report import BIN_RATIO, load_versions, recency_report
from freshness.state.manifest import HISTORY_SCHEMA, MANIFEST_SCHEMA, ShardStateStore
from freshness.state.store import StateStore

T = datetime(2026, 1, 1, tzinfo=timezone.utc)
HOUR = 3600.0
P_OLD, P_NEW = "00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"
P_B0, P_B1, P_B2 = (f"00000000-0000-4000-8000-0000000000b{i}" for i in range(3))
P_OTHER = "00000000-0000-4000-8000-0000000000c0"


def h(hours: float) -> datetime:
    return T + timedelta(hours=hours)


def chunk(doc_id, index, point, updated, embedded, **history):
    return {"doc_id": doc_id, "doc_hash": f"{doc_id}@{updated}", "chunk_index": index,
            "content_hash": point, "point_id": point, "n_tokens": 10,
            "source_updated_at": updated, "embedded_at": embedded, **history}


def commit(state, shard, chunks, retired=()):
    previous = state.load(shard)
    return state.commit(previous, pa.Table.from_pylist(list(chunks), MANIFEST_SCHEMA),
                        pa.Table.from_pylist(list(retired), HISTORY_SCHEMA), {})


@pytest.fixture
def state(tmp_path) -> ShardStateStore:
    """Shard alpha: a.md edited at +2 h and embedded at +5 h, reverted at +19 h / +20 h;
    b.md loses chunk 1 at +5 h (chunk 2 moves up without re-embedding). Shard beta: c.md."""
    state = ShardStateStore(StateStore(tmp_path / "state"), "chunks-test")
    old = chunk("a.md", 0, P_OLD, h(-10), h(-9))
    b0, b1, b2 = (chunk("b.md", i, p, h(-6), h(-5)) for i, p in enumerate((P_B0, P_B1, P_B2)))
    commit(state, "alpha", [old, b0, b1, b2])
    new = chunk("a.md", 0, P_NEW, h(2), h(5))
    commit(state, "alpha", [new, b0, {**b2, "chunk_index": 1}],
           [{**old, "superseded_at": h(2), "retired_at": h(5)},
            {**b1, "superseded_at": h(4), "retired_at": h(5)}])
    reverted = chunk("a.md", 0, P_OLD, h(19), h(20))
    commit(state, "alpha", [reverted, b0, {**b2, "chunk_index": 1}],
           [{**new, "superseded_at": h(19), "retired_at": h(20)}])
    commit(state, "beta", [chunk("c.md", 0, P_OTHER, h(-30), h(-29))])
    return state


def retrievals(*queries) -> pa.Table:
    """(query hours, point_id, doc_id, chunk_index) tuples as a retrievals table."""
    return pa.Table.from_pylist([
        {"request_id": f"r{i}", "ts": h(q), "route": "chat" if i % 2 else "search",
         "doc_id": doc, "point_id": point, "chunk_index": index, "rank": 1, "score": 0.5}
        for i, (q, point, doc, index) in enumerate(queries)], RETRIEVALS_SCHEMA)


def by_request(report):
    return {r["request_id"]: r for r in report.rows.to_pylist()}


def test_loader_reads_live_and_retired_versions_of_every_shard(state):
    versions = load_versions(state)
    assert versions.num_rows == 3 + 3 + 1  # alpha live + alpha retired + beta live
    assert sorted(set(versions["shard"].to_pylist())) == ["alpha", "beta"]
    retired = [r for r in versions.to_pylist() if r["retired_at"] is not None]
    assert sorted((r["point_id"], r["retired_at"]) for r in retired) == sorted(
        [(P_OLD, h(5)), (P_B1, h(5)), (P_NEW, h(20))])


@pytest.mark.parametrize("by", ["point_id", "doc_id"])
def test_edit_then_embed_ages_lags_and_stale_flags_are_exact(state, by):
    def ask(q, point):
        return (q, point, None, None) if by == "point_id" else (q, None, "a.md", 0)

    report = recency_report(retrievals(ask(1, P_OLD), ask(3, P_OLD), ask(6, P_NEW)),
                            load_versions(state), now=h(48), keep_rows=True)
    rows = by_request(report)
    # q < t1 (edit at +2 h): the old version, fresh; age from its source time -10 h.
    assert (rows["r0"]["point_id"], rows["r0"]["content_age_seconds"],
            rows["r0"]["embedding_lag_seconds"], rows["r0"]["stale_served"]) == \
        (P_OLD, 11 * HOUR, 10 * HOUR, False)
    # t1 < q < t2 (embedded at +5 h): still the old version, now stale.
    assert (rows["r1"]["point_id"], rows["r1"]["content_age_seconds"],
            rows["r1"]["embedding_lag_seconds"], rows["r1"]["stale_served"]) == \
        (P_OLD, 13 * HOUR, 12 * HOUR, True)
    # q > t2: the new version, fresh.
    assert (rows["r2"]["point_id"], rows["r2"]["content_age_seconds"],
            rows["r2"]["embedding_lag_seconds"], rows["r2"]["stale_served"]) == \
        (P_NEW, 4 * HOUR, 1 * HOUR, False)
    assert {r["resolved_by"] for r in rows.values()} == {by}
    assert report.counts["served"] == 3 and report.counts["stale_served"] == 1
    overall = report.scope("all")[0]
    assert overall["stale_rate"] == pytest.approx(1 / 3)
    assert overall["fresh_share"] == pytest.approx(2 / 3)
    hist = {(r["metric"], r["bucket"]): (r["retrievals"], r["stale_retrievals"])
            for r in report.histogram.to_pylist() if r["scope"] == "all"}
    assert hist[("content_age", "1-6h")] == (1, 0) and hist[("content_age", "6-24h")] == (2, 1)
    assert hist[("embedding_lag", "1-6h")] == (1, None)
    assert hist[("embedding_lag", "6-24h")] == (2, None)
    assert sum(v[0] for k, v in hist.items() if k[0] == "content_age") == 3


def test_reverted_point_picks_the_interval_containing_the_query(state):
    report = recency_report(retrievals(
        (10, P_OLD, None, None),   # retired at +5 h, back only at +20 h: not live
        (21, P_OLD, None, None),   # the re-embedded copy: source +19 h, embedded +20 h
        (19.5, P_NEW, None, None),  # superseded at +19 h, still served until +20 h: stale
        (-9.5, None, "a.md", 0),   # before the first embedding: not live
    ), load_versions(state), now=h(48), keep_rows=True)
    rows = by_request(report)
    assert rows["r0"]["status"] == "not_live" and rows["r0"]["content_age_seconds"] is None
    assert (rows["r1"]["status"], rows["r1"]["content_age_seconds"],
            rows["r1"]["embedding_lag_seconds"], rows["r1"]["stale_served"]) == \
        ("served", 2 * HOUR, 1 * HOUR, False)
    assert rows["r2"]["stale_served"] is True
    assert rows["r3"]["status"] == "not_live"
    assert report.counts["not_live"] == 2 and report.counts["unresolved"] == 2


def test_doc_position_follows_a_chunk_that_moved_up(state):
    rows = by_request(recency_report(retrievals((1, None, "b.md", 1), (6, None, "b.md", 1)),
                                     load_versions(state), now=h(48), keep_rows=True))
    assert rows["r0"]["point_id"] == P_B1 and rows["r1"]["point_id"] == P_B2
    assert rows["r0"]["stale_served"] is False


def test_unknown_ids_are_counted_and_future_queries_excluded(state):
    report = recency_report(retrievals(
        (1, None, "nope.md", 0), (1, "00000000-0000-4000-8000-00000000dead", None, None),
        (1, "00000000-0000-4000-8000-00000000dead", "a.md", 0),  # unknown point: doc fallback
        (100, P_NEW, None, None), (6, P_NEW, None, None)), load_versions(state), now=h(48),
        keep_rows=True)
    rows = by_request(report)
    assert report.counts == {"served": 2, "unknown": 2, "not_live": 0, "future": 1,
                             "unresolved": 2, "retrievals": 5, "stale_served": 0}
    assert rows["r2"]["resolved_by"] == "doc_id" and rows["r2"]["point_id"] == P_OLD
    assert rows["r3"]["status"] == "future" and rows["r3"]["content_age_seconds"] is None
    assert report.scope("all")[0]["retrievals"] == 2


def test_window_percentiles_scopes_and_traffic_weights(state, tmp_path):
    queries = [(6 + i / 10, P_NEW, None, None) for i in range(8)] + \
        [(30, P_OTHER, None, None), (30.5, P_OTHER, None, None)]
    table = retrievals(*queries, (80, P_OTHER, None, None))
    versions = load_versions(state)
    report = recency_report(table, versions, now=h(100), since=h(0), until=h(48))
    assert report.counts["retrievals"] == 10  # the +80 h query is outside the window
    assert report.traffic_weights() == {"alpha": pytest.approx(0.8), "beta": pytest.approx(0.2)}
    days = {r["key"]: r["retrievals"] for r in report.scope("day")}
    assert days == {"2026-01-01": 8, "2026-01-02": 2}
    assert {r["key"] for r in report.scope("route")} == {"chat", "search"}
    alpha = report.scope("shard")[0]
    # Lags 1.0 .. 1.7 h: nearest-rank p50 is the 4th (1.3 h), within the bin resolution.
    assert alpha["embedding_lag_p50_seconds"] == pytest.approx(1.3 * HOUR, rel=BIN_RATIO - 1)
    assert alpha["embedding_lag_p99_seconds"] == pytest.approx(1.7 * HOUR, rel=BIN_RATIO - 1)
    path = tmp_path / "retrievals.parquet"
    pq.write_table(table, path)
    assert recency_report(path, versions, now=h(100), since=h(0),
                          until=h(48)).traffic_weights() == report.traffic_weights()


def test_shards_without_traffic_get_zero_weight_and_empty_input_works(state):
    report = recency_report(RETRIEVALS_SCHEMA.empty_table(), load_versions(state), now=h(1))
    assert report.traffic_weights() == {"alpha": 0.0, "beta": 0.0}
    assert report.counts["retrievals"] == 0 and report.histogram.num_rows == 0


def test_bad_retrievals_input_names_the_file_and_the_fix(tmp_path, state):
    path = tmp_path / "other.parquet"
    pq.write_table(pa.table({"x": [1]}), path)
    with pytest.raises(SourceError, match="other.parquet.*read_request_logs"):
        recency_report(path, load_versions(state))


def test_duckdb_can_query_the_served_rows(state):
    report = recency_report(retrievals((3, P_OLD, None, None)), load_versions(state),
                            now=h(48), keep_rows=True)
    con = duckdb.connect()
    con.register("served", report.rows)
    stale = con.sql("SELECT count(*) FROM served WHERE stale_served").fetchall()[0][0]
    assert stale == 1
