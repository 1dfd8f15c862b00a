"""Recency: per day, how old the chunks served to queries were and how often they were stale."""

import base64
import io
from datetime import datetime, time, timedelta, timezone

import dagster as dg
import pyarrow as pa

from assets.metadata import clean, table
from assets.resources import FreshnessResource
from assets.shard_embeddings import shard_embeddings
from freshness.config import Settings
from freshness.recency.report import RecencyReport, record_traffic, stale_over_time, write_day
from freshness.util.timeutil import utc_now

recency_days = dg.DailyPartitionsDefinition(start_date="2025-01-01")

request_logs = dg.AssetSpec(
    "request_logs",
    group_name="freshness",
    description="Request logs written by the serving application (native JSONL/Parquet or "
                "OpenInference / OTel GenAI spans), read from FRESHNESS_REQUEST_LOGS_PATH.",
    kinds={"jsonl"},
)

_SHARD_COLUMNS = ("key", "retrievals", "traffic_share", "stale_retrievals", "stale_rate",
                  "content_age_p50_seconds", "content_age_p90_seconds", "content_age_p99_seconds",
                  "embedding_lag_p50_seconds", "embedding_lag_p90_seconds",
                  "embedding_lag_p99_seconds")


def request_logs_for_day(settings: Settings, day: str) -> str:
    """The request logs of one day (YYYY-MM-DD), or a Failure that says how to configure them."""
    if not settings.request_logs_path:
        raise dg.Failure(description="request_logs_path is not set: set "
                         "FRESHNESS_REQUEST_LOGS_PATH or the freshness resource's "
                         "request_logs_path")
    return settings.request_logs_path.replace("{date}", day)


def histogram_png(report: RecencyReport) -> bytes:
    """Bar charts of the day's content age (fresh vs stale) and embedding lag buckets."""
    from matplotlib.figure import Figure

    rows = [r for r in report.histogram.to_pylist() if r["scope"] == "all"]
    figure = Figure(figsize=(8, 2.6), dpi=90)
    axes = figure.subplots(1, 2, sharey=True)
    for ax, metric in zip(axes, ("content_age", "embedding_lag")):
        data = [r for r in rows if r["metric"] == metric]
        labels = [r["bucket"] for r in data]
        stale = [r["stale_retrievals"] or 0 for r in data]
        fresh = [r["retrievals"] - s for r, s in zip(data, stale)]
        ax.bar(labels, fresh, color="#4c78a8", label="fresh")
        if metric == "content_age":
            ax.bar(labels, stale, bottom=fresh, color="#e45756", label="stale served")
            ax.legend(fontsize=7)
        ax.set_title(metric.replace("_", " "), fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("retrievals", fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def timeline_png(report: RecencyReport) -> bytes:
    """Served retrievals over the window (bars) and the share of them that were stale (line)."""
    from matplotlib.figure import Figure

    bins = stale_over_time(report).to_pylist()
    figure = Figure(figsize=(8, 2.4), dpi=90)
    ax = figure.subplots()
    times = [b["bin"] for b in bins]
    step = times[1] - times[0] if len(times) > 1 else timedelta(minutes=1)
    ax.bar(times, [b["served"] for b in bins], width=step * 0.9, align="edge", color="#c6dbef")
    ax.set_ylabel("retrievals served", fontsize=8)
    rate = ax.twinx()
    rate.plot([t + step / 2 for t in times], [b["stale_rate"] for b in bins], color="#e45756",
              marker=".")
    rate.set_ylim(0, max([b["stale_rate"] for b in bins] + [0.05]) * 1.2)
    rate.set_ylabel("stale share (line)", fontsize=8, color="#e45756")
    ax.set_title("stale retrievals over time (UTC)", fontsize=9)
    for axis in (ax, rate):
        axis.tick_params(labelsize=7)
    figure.autofmt_xdate()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _markdown(report: RecencyReport) -> str:
    rows = {(r["metric"], r["bucket"]): r for r in report.histogram.to_pylist()
            if r["scope"] == "all"}
    image = base64.b64encode(histogram_png(report)).decode()
    timeline = base64.b64encode(timeline_png(report)).decode()
    lines = [f"![stale retrievals over time](data:image/png;base64,{timeline})", "",
             f"![recency histogram](data:image/png;base64,{image})", "",
             "| bucket | content age | of which stale | embedding lag |", "|---|---:|---:|---:|"]
    for label in dict.fromkeys(b for _, b in rows):
        age, lag = rows.get(("content_age", label), {}), rows.get(("embedding_lag", label), {})
        lines.append(f"| {label} | {age.get('retrievals', 0)} | {age.get('stale_retrievals', 0)}"
                     f" | {lag.get('retrievals', 0)} |")
    return "\n".join(lines)


def _recency_result(context, freshness: FreshnessResource, day: str, start: datetime,
                    end: datetime) -> dg.MaterializeResult:
    """Compute and store the recency of [start, end) from the logs of `day`; metadata with the
    histogram plot and the numbers the Plots tab draws over time."""
    rt = freshness.runtime()
    report, ingest, folder = write_day(rt.store, rt.shard_state(),
                                       request_logs_for_day(rt.settings, day), start, end)
    counts, overall = report.counts, report.scope("all")[0]
    if ingest.quarantine_path:
        context.log.warning("quarantined %d malformed log records: %s",
                            ingest.counts["quarantined"], ingest.quarantine_path)
    record_traffic(rt.store, report)  # the policy weighs docs and shards by it; alerts too
    shards = pa.Table.from_pylist([{("shard" if k == "key" else k): r[k] for k in _SHARD_COLUMNS}
                                   for r in report.scope("shard")])

    def rounded(value: float | None, digits: int) -> float | None:
        return None if value is None else round(value, digits)

    percentiles = {f"{m}_p{q}_seconds": rounded(overall[f"{m}_p{q}_seconds"], 1)
                   for m in ("content_age", "embedding_lag") for q in (50, 90, 99)}
    return dg.MaterializeResult(metadata=clean({
        "window_start": dg.MetadataValue.timestamp(start.timestamp()),
        "window_end": dg.MetadataValue.timestamp(end.timestamp()),
        "retrievals": counts["retrievals"],
        "served": counts["served"],
        "stale_served": counts["stale_served"],
        "unresolved": counts["unresolved"],
        "unknown_ids": counts["unknown"],
        "not_live_at_query_time": counts["not_live"],
        "future_timestamps_excluded": counts["future"],
        "quarantined_records": ingest.counts.get("quarantined", 0),
        "stale_retrieval_rate": rounded(overall["stale_rate"], 4),
        "retrieval_weighted_freshness": rounded(overall["fresh_share"], 4),
        **percentiles,
        "per_shard": table(shards) if shards.num_rows else None,
        "histogram": dg.MetadataValue.md(_markdown(report)) if counts["served"] else None,
        "traffic_weights": dg.MetadataValue.json(report.traffic_weights()),
        "output": dg.MetadataValue.path(folder),
        "dagster/row_count": counts["retrievals"],
    }))


@dg.asset(
    group_name="freshness",
    partitions_def=recency_days,
    deps=[dg.AssetDep(shard_embeddings, partition_mapping=dg.AllPartitionMapping()),
          request_logs],
    kinds={"duckdb", "parquet"},
)
def recency(context: dg.AssetExecutionContext,
            freshness: FreshnessResource) -> dg.MaterializeResult:
    """Age and staleness of the chunks retrieved each day, per shard, with traffic weights."""
    window = context.partition_time_window
    return _recency_result(context, freshness, context.partition_key, window.start, window.end)


@dg.asset(
    group_name="freshness",
    deps=[shard_embeddings, request_logs],
    kinds={"duckdb", "parquet"},
)
def recency_today(context: dg.AssetExecutionContext,
                  freshness: FreshnessResource) -> dg.MaterializeResult:
    """Today so far (UTC): age and staleness of the chunks retrieved since midnight, refreshed
    every few minutes; its stale-retrieval rate over time is in the Plots tab."""
    now = utc_now()
    start = datetime.combine(now.date(), time(), tzinfo=timezone.utc)
    return _recency_result(context, freshness, now.date().isoformat(), start, now)


recency_today_job = dg.define_asset_job("recency_today_job", selection=[recency_today],
                                        description="Refresh today's recency so far.")
recency_intraday = dg.ScheduleDefinition(
    job=recency_today_job, cron_schedule="*/15 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Today's recency so far, every 15 minutes.")
