"""Benchmark (not a test): recency histograms over synthetic request logs.

Generates `chunks` chunk versions in 12 shards (30 % replaced during the week, so the as-of
join has history to pick from) and `rows` retrievals over 7 days with DuckDB, then times
`recency_report` against a bare DuckDB point-id join + bucketing baseline in one child
process (median of 3 each) and reads that process's peak RSS.

    python -m benchmarks.recency_bench [ROWS] [CHUNKS]
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from freshness.recency.report import BUCKETS, recency_report

START = "TIMESTAMPTZ '2026-01-01 00:00:00+00'"
DAYS = 7
NOW = datetime(2026, 1, 8, tzinfo=timezone.utc)  # the report's "now": after the synthetic week


def generate(folder: Path, rows: int, chunks: int) -> None:
    """Write versions.parquet and retrievals.parquet (RETRIEVALS_SCHEMA) under `folder`."""
    con = duckdb.connect(config={"threads": 2})
    con.sql("SET TimeZone = 'UTC'")
    con.sql(f"""CREATE TABLE versions AS
        WITH base AS (SELECT i, 'shard-' || lpad((i % 12)::VARCHAR, 2, '0') AS shard,
            'doc-' || (i // 4) AS doc_id, (i % 4)::INT AS chunk_index,
            {START} - to_seconds((hash(i, 1) % (120 * 86400))::BIGINT) AS born,
            {START} + to_seconds((hash(i, 2) % ({DAYS} * 86400))::BIGINT) AS edited
          FROM range({chunks}) t(i))
        SELECT shard, doc_id, md5('h' || i) AS doc_hash, chunk_index, md5('c' || i) AS content_hash,
          md5('p' || i)::UUID::VARCHAR AS point_id, 200 AS n_tokens,
          CASE WHEN i % 10 < 3 THEN edited - INTERVAL 2 HOUR ELSE born - INTERVAL 1 HOUR END
            AS source_updated_at,
          CASE WHEN i % 10 < 3 THEN edited ELSE born END AS embedded_at,
          NULL::TIMESTAMPTZ AS superseded_at, NULL::TIMESTAMPTZ AS retired_at FROM base
        UNION ALL
        SELECT shard, doc_id, md5('g' || i), chunk_index, md5('d' || i),
          md5('q' || i)::UUID::VARCHAR, 200, born - INTERVAL 1 DAY, born,
          edited - INTERVAL 2 HOUR, edited FROM base WHERE i % 10 < 3""")
    con.sql(f"""CREATE TABLE pick AS SELECT row_number() OVER () - 1 AS rid, *,
        greatest(embedded_at, {START}) AS lo,
        least(coalesce(retired_at, {START} + INTERVAL {DAYS} DAY), {START} + INTERVAL {DAYS} DAY)
          AS hi FROM versions""")
    n = con.sql("SELECT count(*) FROM pick").fetchall()[0][0]
    con.sql(f"COPY versions TO '{folder / 'versions.parquet'}' (FORMAT parquet)")
    con.sql(f"""COPY (
        SELECT 'req-' || (i // 5) AS request_id,
          CASE WHEN i % 1000 = 7 THEN {START} + INTERVAL 400 DAY ELSE
            v.lo + to_microseconds(((hash(i, 3) % 1000000) / 1e6
                                    * (epoch_us(v.hi) - epoch_us(v.lo)))::BIGINT) END AS ts,
          'route-' || (i % 5) AS route, NULL::VARCHAR AS user_segment, NULL::VARCHAR AS shard,
          CASE WHEN i % 10 = 0 THEN v.doc_id WHEN i % 100 = 1 THEN 'unknown-' || i END AS doc_id,
          CASE WHEN i % 10 <> 0 AND i % 100 <> 1 THEN v.point_id END AS point_id,
          CASE WHEN i % 10 = 0 THEN v.chunk_index END AS chunk_index,
          (i % 5 + 1)::INT AS rank, 0.5::DOUBLE AS score
        FROM range({rows}) t(i)
        JOIN pick v ON v.rid = floor({n} * pow((hash(i, 4) % 1000000) / 1e6, 2.5))::BIGINT
    ) TO '{folder / 'retrievals.parquet'}' (FORMAT parquet)""")


def baseline(retrievals: Path, versions: Path, threads: int, memory_limit: str):
    """The bare alternative: an equality join on point id, content age bucketed per shard."""
    age = "(epoch_us(r.ts) - epoch_us(v.source_updated_at)) / 1e6"
    whens = " ".join(f"WHEN {age} < {edge} THEN {i}" for i, (_, edge) in enumerate(BUCKETS[:-1]))
    con = duckdb.connect(config={"threads": threads, "memory_limit": memory_limit})
    return con.sql(f"""SELECT v.shard, CASE {whens} ELSE 6 END AS bucket, count(*) AS n
        FROM read_parquet('{retrievals}') r JOIN read_parquet('{versions}') v
          ON v.point_id = r.point_id GROUP BY ALL""").to_arrow_table()


def _peak_rss_mb() -> float:
    """VmHWM of this process: ru_maxrss would inherit the parent's peak across fork + exec."""
    from benchmarks.common import peak_rss_mb

    return peak_rss_mb()


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(fn) -> tuple[float, float, object]:
    """Wall and CPU (user + system, all threads) seconds of one call, and its result."""
    wall, cpu = time.perf_counter(), _cpu_seconds()
    result = fn()
    return time.perf_counter() - wall, _cpu_seconds() - cpu, result


def measure(folder: Path, threads: int = 2, memory_limit: str = "700MB") -> dict:
    """Median-of-3 wall and CPU seconds and peak RSS of recency_report, then of the baseline."""
    versions = pq.read_table(folder / "versions.parquet")
    retrievals = folder / "retrievals.parquet"
    runs = [_timed(lambda: recency_report(retrievals, versions, now=NOW, threads=threads,
                                          memory_limit=memory_limit)) for _ in range(3)]
    rss = _peak_rss_mb()
    base = [_timed(lambda: baseline(retrievals, folder / "versions.parquet", threads,
                                    memory_limit)) for _ in range(3)]
    wall, cpu = (statistics.median(r[i] for r in runs) for i in (0, 1))
    base_wall, base_cpu = (statistics.median(r[i] for r in base) for i in (0, 1))
    return {"recency_seconds_median": round(wall, 3),
            "recency_seconds_runs": [round(r[0], 3) for r in runs],
            "recency_cpu_seconds_median": round(cpu, 3),
            "recency_peak_rss_mb": round(rss, 1),
            "baseline_seconds_median": round(base_wall, 3),
            "baseline_cpu_seconds_median": round(base_cpu, 3),
            "ratio_to_baseline": round(wall / base_wall, 2),
            "cpu_ratio_to_baseline": round(cpu / base_cpu, 2),
            "peak_rss_mb_with_baseline": round(_peak_rss_mb(), 1),
            "counts": runs[-1][2].counts}


def run(rows: int = 10_000_000, chunks: int = 100_000, threads: int = 2,
        memory_limit: str = "700MB") -> dict:
    """Generate the data, then measure in a fresh process so RSS is the computation's own."""
    with tempfile.TemporaryDirectory(prefix="recency-bench-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        generate(folder, rows, chunks)
        generated = time.perf_counter() - started
        child = subprocess.run(
            [sys.executable, "-m", "benchmarks.recency_bench", "--measure", str(folder),
             str(threads), memory_limit], capture_output=True, text=True, check=True,
            cwd=Path(__file__).resolve().parents[1], env={**os.environ})
        result = json.loads(child.stdout.strip().splitlines()[-1])
    return {"rows": rows, "chunks": chunks, "threads": threads, "memory_limit": memory_limit,
            "generate_seconds": round(generated, 1), "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()], **result}


def suite(ctx) -> dict:
    """Adapter for `python -m benchmarks run`: 10 M rows (1 M with --quick), as figures."""
    from benchmarks.common import Figure

    rows = 1_000_000 if ctx.quick else 10_000_000
    out = run(rows=rows)
    return {"figures": [
        Figure("recency", f"recency_report, {rows:,} request rows", out["recency_seconds_median"],
               "s", 3, out["baseline_seconds_median"], out["ratio_to_baseline"], None, None,
               f"peak RSS {out['recency_peak_rss_mb']:.0f} MiB (child); baseline = bare "
               f"point-id join + bucketing; CPU ratio {out['cpu_ratio_to_baseline']}"),
    ], "details": out}


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        print(json.dumps(measure(Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4])))
    else:
        sizes = [int(a.replace("_", "")) for a in sys.argv[1:3]]
        print(json.dumps(run(*sizes), indent=2))
