"""End to end: replay a change log with periodic re-embedding, generate queries, and check that
the stale-retrieval rate measured from the logs matches what the simulator predicts for the
same schedule, within Monte Carlo error."""

import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from freshness.pipeline.detect import detect
from freshness.pipeline.sync import sync
from freshness.policy.planner import CostModel
from freshness.policy.simulator import ChangeLog, simulate
from freshness.recency.logs import read_request_logs
from freshness.recency.report import load_versions, recency_report
from freshness.sources import ReplaySource

T0 = datetime(2024, 3, 1, tzinfo=timezone.utc)
DAYS, PERIOD, QUERIES = 20.0, 2.0, 3000
SCHEMA = pa.schema([("commit_seq", pa.int32()), ("committed_at", pa.timestamp("us", "UTC")),
                    ("path", pa.string()), ("shard", pa.string()), ("op", pa.string()),
                    ("content", pa.string())])


def zipf_popularity(paths):
    """Retrieval weight 1/rank by the order the change log lists the docs."""
    return dict(zip(paths, 1.0 / np.arange(1, len(paths) + 1)))


def write_change_log(folder, rng):
    paths = [f"{s}/doc{i}.md" for s in ("a", "b") for i in range(8)]
    snapshot = [(0, T0, p, p.split("/")[0], "add", f"{p} version 0 about topic {i}")
                for i, p in enumerate(paths)]
    times = np.sort(rng.uniform(0.1, DAYS, 36))
    changes = [(k + 1, T0 + timedelta(days=float(t)), p, p.split("/")[0], "modify",
                f"{p} version {k + 1} mentions item {k}")
               for k, (t, p) in enumerate(zip(times, rng.choice(paths, len(times))))]
    for name, rows in (("snapshot", snapshot), ("replay", changes)):
        table = pa.Table.from_pylist([dict(zip(SCHEMA.names, r)) for r in rows], SCHEMA)
        pq.write_table(table, folder / f"{name}.parquet")
    return paths, folder / "snapshot.parquet", folder / "replay.parquet", float(times[-1])


def zipf_queries_report(rt, folder: Path, paths: list[str], popularity: dict[str, float],
                        rng: np.random.Generator, horizon: float):
    """QUERIES requests at uniform times, each retrieving one doc drawn by popularity, written
    as a request log and joined by the recency report: (report, the docs drawn)."""
    weights = np.array([popularity[p] for p in paths])
    query_days = rng.uniform(0, horizon, QUERIES)
    docs = rng.choice(paths, QUERIES, p=weights / weights.sum())
    with open(folder / "logs.jsonl", "w") as out:
        for i, (day, doc) in enumerate(zip(query_days, docs)):
            out.write(json.dumps({
                "request_id": f"q{i}", "ts": (T0 + timedelta(days=float(day))).isoformat(),
                "retrieved": [{"doc_id": doc, "chunk_index": 0, "rank": 1}]}) + "\n")
    ingest = read_request_logs(folder / "logs.jsonl")
    report = recency_report(ingest.retrievals, load_versions(rt.shard_state()),
                            now=T0 + timedelta(days=DAYS + 1))
    return report, docs


def test_measured_stale_rate_matches_the_simulator(tmp_path, make_runtime):
    rng = np.random.default_rng(11)
    paths, snapshot, replay, horizon = write_change_log(tmp_path, rng)
    popularity = zipf_popularity(paths)

    source = ReplaySource(snapshot, replay, as_of_seq=0)
    rt = make_runtime(source=source)
    runs = [T0 + timedelta(days=k * PERIOD) for k in range(int(horizon // PERIOD) + 1)]
    polls = pq.read_table(replay)["committed_at"].to_pylist()
    for at, is_run in sorted([(t, True) for t in runs] + [(t, False) for t in polls]):
        source.seek(at=at)  # the replayed clock: every commit is polled, every PERIOD embedded
        if is_run:
            assert sync(rt, now=at).ok
        else:
            detect(rt)

    report, docs = zipf_queries_report(rt, tmp_path, paths, popularity, rng, horizon)
    overall = report.scope("all")[0]
    assert report.counts["served"] == QUERIES
    measured = overall["stale_rate"]
    traffic = report.traffic()  # what recency writes for the policy: per-doc shares
    counts = dict(zip(*np.unique(docs, return_counts=True)))
    shares = {d: w for top in traffic.top_docs.values() for d, w in top.items()}
    assert shares == pytest.approx({d: n / QUERIES for d, n in counts.items()})

    log = ChangeLog.from_parquet(str(snapshot), str(replay), popularity=popularity)
    predicted = 1 - simulate(log, "uniform", PERIOD, CostModel()).retrieval_weighted_freshness
    error = math.sqrt(predicted * (1 - predicted) / QUERIES)
    assert 0.05 < predicted < 0.6  # the schedule leaves a measurable stale share
    assert abs(measured - predicted) <= 3 * error, (measured, predicted, error)
