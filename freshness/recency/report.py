"""Query-to-document recency: which chunk version each retrieval served, how old and how stale.

Each retrieved chunk is matched, in DuckDB, to the version that was live in the index at query
time (an as-of join on the per-shard state history), then aggregated into fixed log-scale
histograms, percentiles, the stale-retrieval rate and per-shard traffic weights. See
docs/recency.md for the definitions and their limits.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from freshness.errors import SourceError
from freshness.recency.logs import RETRIEVALS_SCHEMA, LogIngest, read_request_logs
from freshness.state import layout
from freshness.state.manifest import HISTORY_SCHEMA, ShardStateStore
from freshness.state.store import StateStore
from freshness.state.traffic import Traffic, bounded, record_days
from freshness.util.duck import registered
from freshness.util.timeutil import as_utc, utc_now

BUCKETS: tuple[tuple[str, float], ...] = (
    ("<1h", 3600), ("1-6h", 21600), ("6-24h", 86400), ("1-7d", 604800), ("7-30d", 2592000),
    ("30-90d", 7776000), (">90d", math.inf))
BIN_RATIO = 1.05  # percentiles come from log bins this wide: within ±2.5 % of the exact value
_MAX_BIN = 1 + int(math.log(10 * 365 * 86400) / math.log(BIN_RATIO))
VERSIONS_SCHEMA = pa.schema([("shard", pa.string()), *HISTORY_SCHEMA])
_TILE_COLUMNS = ("key", "live_from", "live_to", "shard", "doc_id", "chunk_index", "point_id",
                 "source_updated_at", "embedded_at", "superseded_at")
_TILES_SQL = """
CREATE TEMP TABLE tiles AS
WITH v AS (SELECT *, coalesce(retired_at, 'infinity'::TIMESTAMPTZ) AS live_to FROM versions),
k AS (SELECT point_id AS key, * FROM v
      UNION ALL SELECT doc_id || '#' || chunk_index AS key, * FROM v),
c AS (SELECT *, greatest(embedded_at, coalesce(lag(live_to) OVER (PARTITION BY key
        ORDER BY live_to, embedded_at), '-infinity'::TIMESTAMPTZ)) AS live_from FROM k),
l AS (SELECT * FROM c WHERE live_from < live_to)
SELECT coalesce(lag(live_to) OVER w, '-infinity'::TIMESTAMPTZ) AS tile_from,
       CASE WHEN lead(live_to) OVER w IS NULL THEN 'infinity'::TIMESTAMPTZ ELSE live_to END
         AS tile_to, {columns}
FROM l WINDOW w AS (PARTITION BY key ORDER BY live_from)
"""
_SERVED_SQL = """
CREATE TEMP VIEW served AS
WITH r AS (SELECT * FROM retrievals_in WHERE {window}),
p AS (SELECT r.*, {point_cols}, CASE WHEN p.key IS NULL
        THEN r.doc_id || '#' || coalesce(r.chunk_index, 0) END AS doc_key
      FROM r LEFT JOIN tiles p ON p.key = r.point_id AND r.ts >= p.tile_from
        AND r.ts < p.tile_to),
t AS (SELECT p.*, {resolved_cols} FROM p LEFT JOIN tiles d ON d.key = p.doc_key
        AND p.ts >= d.tile_from AND p.ts < d.tile_to),
s AS (SELECT *, CASE WHEN ts > {now} THEN 'future' WHEN t_key IS NULL THEN 'unknown'
        WHEN ts < t_live_from OR ts >= t_live_to THEN 'not_live' ELSE 'served' END AS status
      FROM t)
SELECT request_id, ts, route, user_segment, coalesce(t_shard, shard) AS shard,
  coalesce(t_doc_id, doc_id) AS doc_id, coalesce(t_point_id, point_id) AS point_id,
  coalesce(t_chunk_index, chunk_index) AS chunk_index, rank, score, status,
  CASE WHEN t_key IS NULL THEN NULL WHEN t_key = point_id THEN 'point_id' ELSE 'doc_id' END
    AS resolved_by,
  t_source_updated_at AS source_updated_at, t_embedded_at AS embedded_at,
  t_superseded_at AS superseded_at,
  CASE WHEN status = 'served' THEN (epoch_us(ts) - epoch_us(t_source_updated_at)) / 1e6 END
    AS content_age_seconds,
  CASE WHEN status = 'served' THEN (epoch_us(ts) - epoch_us(t_embedded_at)) / 1e6 END
    AS embedding_lag_seconds,
  CASE WHEN status = 'served' THEN coalesce(t_superseded_at <= ts, false) END AS stale_served
FROM s
"""


def _live_superseded(manifest, pending: pa.Table | None) -> pa.Array:
    """For live chunks: when detection saw their doc change (still pending), else null."""
    ts_type = HISTORY_SCHEMA.field("superseded_at").type
    if pending is None or not pending.num_rows:
        return pa.nulls(manifest.chunks.num_rows, ts_type)
    since = dict(zip(pending["doc_id"].to_pylist(), pending["since"].to_pylist()))
    return pa.array([since.get(d) for d in manifest.chunks["doc_id"].to_pylist()], ts_type)


def load_versions(state: ShardStateStore, shards: Iterable[str] | None = None) -> pa.Table:
    """Every chunk version of a collection's shards: live ones and retired history.

    A live version whose doc detection has seen changed (pending, not yet embedded) carries
    that time as `superseded_at`, so retrievals after it count as stale."""
    tables = []
    for shard in state.shards() if shards is None else shards:
        manifest = state.load(shard)
        live = manifest.chunks
        nulls = pa.nulls(live.num_rows, HISTORY_SCHEMA.field("retired_at").type)
        live = live.append_column("superseded_at", _live_superseded(
            manifest, state.pending_docs_for(manifest))).append_column("retired_at", nulls)
        for table in (live.cast(HISTORY_SCHEMA), state.history(shard)):
            tables.append(table.add_column(0, "shard", pa.array([shard] * table.num_rows,
                                                                pa.string())))
    return pa.concat_tables(tables) if tables else VERSIONS_SCHEMA.empty_table()


@dataclass
class RecencyReport:
    """Recency of the retrievals in a window: counts, per-scope summary and histograms."""

    counts: dict[str, int]
    summary: pa.Table  # scope, key, retrievals, traffic_share, stale rate, percentiles
    histogram: pa.Table  # scope, key, metric, bucket_index, bucket, retrievals, stale
    rows: pa.Table | None = None  # one row per retrieval (when asked for)
    doc_retrievals: pa.Table | None = None  # day, shard, doc_id, retrievals (served only)

    def scope(self, name: str) -> list[dict]:
        """Summary rows of one scope: shard, route, day or all."""
        return [r for r in self.summary.to_pylist() if r["scope"] == name]

    def traffic(self) -> Traffic:
        """Per-doc retrieval shares, bounded (top docs + per-shard remainder), for the policy."""
        return bounded(self.doc_retrievals if self.doc_retrievals is not None
                       else pa.table({"shard": [], "doc_id": [], "retrievals": []}))

    def traffic_weights(self) -> dict[str, float]:
        """Each shard's share of the served retrievals (0.0 for shards nobody retrieved)."""
        return {r["key"]: r["traffic_share"] or 0.0 for r in self.scope("shard")}


def _connect(retrievals: pa.Table | str | Path, versions: pa.Table, threads: int | None,
             memory_limit: str | None) -> duckdb.DuckDBPyConnection:
    config = {k: v for k, v in (("threads", threads), ("memory_limit", memory_limit)) if v}
    con = duckdb.connect(config=config)
    con.sql("SET TimeZone = 'UTC'")
    con.sql("SET preserve_insertion_order = false")
    con.sql("SET enable_progress_bar = false")
    con.register("versions", versions.select(VERSIONS_SCHEMA.names))
    columns = ", ".join(RETRIEVALS_SCHEMA.names)
    if isinstance(retrievals, pa.Table):
        con.register("retrievals_raw", retrievals)
        source = "retrievals_raw"
    else:
        source = "read_parquet('{}')".format(str(retrievals).replace("'", "''"))
    try:
        con.sql(f"CREATE TEMP VIEW retrievals_in AS SELECT {columns} FROM {source}")
    except duckdb.Error as exc:
        name = retrievals if isinstance(retrievals, (str, Path)) else "table"
        raise SourceError(f"retrievals {name} lack the columns {columns} "
                          f"({str(exc).splitlines()[0]}): build them with "
                          "freshness.recency.logs.read_request_logs") from exc
    con.sql(_TILES_SQL.format(columns=", ".join(_TILE_COLUMNS)))
    return con


def _served(con: duckdb.DuckDBPyConnection, now: datetime | None, since: datetime | None,
            until: datetime | None) -> None:
    """Define the `served` view: one row per retrieval with the version it served."""
    def literal(value: datetime) -> str:
        return f"'{as_utc(value).isoformat()}'::TIMESTAMPTZ"

    window = [f"ts >= {literal(since)}" if since else "", f"ts < {literal(until)}" if until else ""]
    con.sql(_SERVED_SQL.format(
        window=" AND ".join(w for w in window if w) or "true", now=literal(now or utc_now()),
        point_cols=", ".join(f"p.{c} AS p_{c}" for c in _TILE_COLUMNS),
        resolved_cols=", ".join(f"coalesce(p.p_{c}, d.{c}) AS t_{c}" for c in _TILE_COLUMNS)))


def _bucket(x: str) -> str:
    whens = " ".join(f"WHEN {x} < {edge} THEN {i}" for i, (_, edge) in enumerate(BUCKETS[:-1]))
    return f"CASE {whens} ELSE {len(BUCKETS) - 1} END"


def _bin(x: str) -> str:
    return (f"CASE WHEN {x} < 1 THEN 0 ELSE least(1 + floor(ln({x}) / {math.log(BIN_RATIO)!r}),"
            f" {_MAX_BIN})::SMALLINT END")


_CUBE_SQL = """
SELECT status, shard, coalesce(route, '(none)') AS route, ts::DATE AS day, stale_served AS stale,
  {age_bucket} AS age_bucket, {age_bin} AS age_bin, {lag_bucket} AS lag_bucket,
  {lag_bin} AS lag_bin, count(*) AS n
FROM {source} GROUP BY ALL
"""
_OBS_SQL = """
CREATE TEMP TABLE obs AS
WITH m AS (
  SELECT 'content_age' AS metric, age_bucket AS bucket, age_bin AS bin, stale, shard, route, day,
         sum(n) AS n FROM cube WHERE status = 'served' GROUP BY ALL
  UNION ALL SELECT 'embedding_lag', lag_bucket, lag_bin, NULL, shard, route, day, sum(n)
  FROM cube WHERE status = 'served' GROUP BY ALL)
SELECT 'shard' AS scope, shard AS key, * EXCLUDE (shard, route, day) FROM m
UNION ALL SELECT 'route', route, * EXCLUDE (shard, route, day) FROM m
UNION ALL SELECT 'day', day::VARCHAR, * EXCLUDE (shard, route, day) FROM m
UNION ALL SELECT 'all', 'all', * EXCLUDE (shard, route, day) FROM m
"""
_SCOPES = "CASE scope WHEN 'shard' THEN 0 WHEN 'route' THEN 1 WHEN 'day' THEN 2 ELSE 3 END"
_SUMMARY_SQL = """
WITH keys AS (SELECT DISTINCT scope, key FROM obs UNION SELECT 'shard', shard FROM shards
              UNION SELECT 'all', 'all'),
base AS (SELECT scope, key, sum(n) AS retrievals, coalesce(sum(n) FILTER (WHERE stale), 0)
           AS stale_retrievals FROM obs WHERE metric = 'content_age' GROUP BY ALL),
h AS (SELECT scope, key, metric, bin, sum(n) AS n FROM obs GROUP BY ALL),
c AS (SELECT *, sum(n) OVER (PARTITION BY scope, key, metric ORDER BY bin) AS cum,
             sum(n) OVER (PARTITION BY scope, key, metric) AS total FROM h),
q AS (SELECT scope, key, {quantiles} FROM c GROUP BY ALL)
SELECT k.scope, k.key, coalesce(retrievals, 0)::BIGINT AS retrievals,
  coalesce(retrievals, 0) / nullif((SELECT sum(n) FROM obs WHERE scope = 'all'
                                    AND metric = 'content_age'), 0) AS traffic_share,
  coalesce(stale_retrievals, 0)::BIGINT AS stale_retrievals,
  stale_retrievals / nullif(retrievals, 0) AS stale_rate,
  1 - stale_retrievals / nullif(retrievals, 0) AS fresh_share, q.* EXCLUDE (scope, key)
FROM keys k LEFT JOIN base USING (scope, key) LEFT JOIN q USING (scope, key)
ORDER BY {scopes}, k.key
"""
_HISTOGRAM_SQL = """
WITH keys AS (SELECT DISTINCT scope, key, metric FROM obs),
buckets AS (SELECT * FROM (VALUES {buckets}) b(bucket_index, bucket)),
h AS (SELECT scope, key, metric, bucket AS bucket_index, sum(n) AS n,
             sum(n) FILTER (WHERE stale) AS stale FROM obs GROUP BY ALL)
SELECT k.scope, k.key, k.metric, b.bucket_index, b.bucket, coalesce(h.n, 0)::BIGINT AS retrievals,
  CASE WHEN k.metric = 'content_age' THEN coalesce(h.stale, 0) END::BIGINT AS stale_retrievals
FROM keys k CROSS JOIN buckets b LEFT JOIN h USING (scope, key, metric, bucket_index)
ORDER BY {scopes}, k.key, k.metric, b.bucket_index
"""


def _quantiles() -> str:
    parts = []
    for metric in ("content_age", "embedding_lag"):
        for q in (50, 90, 99):
            b = f"min(bin) FILTER (WHERE metric = '{metric}' AND cum >= ceil({q / 100} * total))"
            parts.append(f"CASE WHEN {b} = 0 THEN 0.0 ELSE pow({BIN_RATIO}, {b} - 0.5) END "
                         f"AS {metric}_p{q}_seconds")
    return ", ".join(parts)


def recency_report(retrievals: pa.Table | str | Path, versions: pa.Table, *,
                   now: datetime | None = None, since: datetime | None = None,
                   until: datetime | None = None, keep_rows: bool = False,
                   threads: int | None = None, memory_limit: str | None = None) -> RecencyReport:
    """Match retrievals (a table or Parquet path) to served versions and aggregate recency."""
    con = _connect(retrievals, versions, threads, memory_limit)
    _served(con, now, since, until)
    rows = None
    if keep_rows:
        con.sql("CREATE TEMP TABLE served_rows AS SELECT * FROM served")
        rows = con.sql("SELECT * FROM served_rows ORDER BY ts, request_id, rank").to_arrow_table()
    source = "served_rows" if keep_rows else "served"
    cube = con.sql(_CUBE_SQL.format(
        source=source, age_bucket=_bucket("content_age_seconds"),
        age_bin=_bin("content_age_seconds"), lag_bucket=_bucket("embedding_lag_seconds"),
        lag_bin=_bin("embedding_lag_seconds"))).to_arrow_table()
    report = _aggregate(cube, versions, rows)
    report.doc_retrievals = con.sql(
        f"SELECT CAST(ts AS DATE) AS day, shard, doc_id, count(*) AS retrievals FROM {source} "
        "WHERE status = 'served' GROUP BY ALL").to_arrow_table()
    return report


def _aggregate(cube: pa.Table, versions: pa.Table, rows: pa.Table | None) -> RecencyReport:
    """Counts, summary and histograms from the small per-bin cube."""
    con = duckdb.connect()
    con.register("cube", cube)
    shards = sorted(set(versions["shard"].to_pylist()))
    con.register("shards", pa.table({"shard": pa.array(shards, pa.string())}))
    con.sql(_OBS_SQL)
    status = dict(con.sql("SELECT status, sum(n)::BIGINT FROM cube GROUP BY ALL").fetchall())
    counts = {k: int(status.get(k, 0)) for k in ("served", "unknown", "not_live", "future")}
    counts["unresolved"] = counts["unknown"] + counts["not_live"]
    counts["retrievals"] = sum(int(v) for v in status.values())
    counts["stale_served"] = int(con.sql("SELECT coalesce(sum(n), 0) FROM cube WHERE stale")
                                 .fetchall()[0][0])
    summary = con.sql(_SUMMARY_SQL.format(quantiles=_quantiles(), scopes=_SCOPES)).to_arrow_table()
    buckets = ", ".join(f"({i}, '{label}')" for i, (label, _) in enumerate(BUCKETS))
    histogram = con.sql(_HISTOGRAM_SQL.format(buckets=buckets, scopes=_SCOPES)).to_arrow_table()
    return RecencyReport(counts, summary, histogram, rows)


def write_day(store: StateStore, state: ShardStateStore, logs: str | Path | list[str],
              start: datetime, end: datetime,
              now: datetime | None = None) -> tuple[RecencyReport, LogIngest, str]:
    """Recency of the requests in [start, end), as Parquet under recency/day=<start date>/."""
    folder = layout.recency_day_dir(as_utc(start).date().isoformat())
    with tempfile.TemporaryDirectory(prefix="freshness-logs-") as tmp:
        ingest = read_request_logs(logs, Path(tmp) / "quarantine.jsonl")
        if ingest.quarantine_path:
            store.write_bytes(Path(ingest.quarantine_path).read_bytes(), *folder,
                              "quarantine.jsonl")
            ingest.quarantine_path = store.path(*folder, "quarantine.jsonl")
        else:
            store.delete(*folder, "quarantine.jsonl")
    report = recency_report(ingest.retrievals, load_versions(state), now=now, since=start,
                            until=end, keep_rows=True)
    for name, data in (("retrievals", report.rows), ("summary", report.summary),
                       ("histogram", report.histogram)):
        store.write_table(data, *folder, f"{name}.parquet")
    return report, ingest, store.path(*folder)


def stale_over_time(report: RecencyReport, bins: int = 24) -> pa.Table:
    """The served retrievals of a report (with rows) in about `bins` equal time bins of whole
    minutes: bin start, served, stale served, stale rate — when stale retrievals happened."""
    if report.rows is None or not report.counts["served"]:
        return pa.table({"bin": pa.array([], pa.timestamp("us", "UTC")),
                         "served": pa.array([], pa.int64()), "stale": pa.array([], pa.int64()),
                         "stale_rate": pa.array([], pa.float64())})
    with registered(rows=report.rows) as con:
        con.sql("SET TimeZone = 'UTC'")
        return con.sql(f"""
            WITH s AS (SELECT ts, stale_served FROM rows WHERE status = 'served'),
            w AS (SELECT greatest(1, ceil(epoch(max(ts) - min(ts)) / 60 / {bins}))::INT AS m
                  FROM s)
            SELECT time_bucket(to_minutes((SELECT m FROM w)), ts) AS bin, count(*) AS served,
                   count(*) FILTER (WHERE stale_served) AS stale,
                   count(*) FILTER (WHERE stale_served) / count(*) AS stale_rate
            FROM s GROUP BY ALL ORDER BY bin""").to_arrow_table()


def record_traffic(store: StateStore, report: RecencyReport) -> None:
    """Keep what this report measured for the policy and the alerts: its days' per-doc
    retrieval counts, from which the per-doc and per-shard shares are learned over the last
    weeks (`freshness.state.traffic.record_days`), and each shard's stale-retrieval rate.
    Needs nothing when nothing was served."""
    if not report.counts["served"] or report.doc_retrievals is None:
        return
    record_days(store, report.doc_retrievals)
    store.write_json({r["key"]: {k: r[k] for k in ("retrievals", "traffic_share", "stale_rate")}
                      for r in report.scope("shard")}, *layout.RECENCY_SHARDS_FILE)


def shard_stale_rates(store: StateStore) -> dict[str, float]:
    """Per shard, the stale-retrieval rate of the latest report (empty before any)."""
    latest = store.read_json(*layout.RECENCY_SHARDS_FILE) or {}
    return {s: v["stale_rate"] for s, v in latest.items() if v.get("stale_rate") is not None}
