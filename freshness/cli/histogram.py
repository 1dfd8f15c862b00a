"""`freshness histogram`: content age, embedding lag and stale rate of the chunks logs retrieved."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path

from freshness.cli.common import add_common_options
from freshness.errors import FreshnessError
from freshness.recency.logs import read_request_logs
from freshness.recency.report import (
    BUCKETS,
    RecencyReport,
    load_versions,
    recency_report,
    record_traffic,
)
from freshness.runtime import Runtime
from freshness.util.timeutil import as_utc, utc_now


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `histogram` (with the common --state-root/--json options) on the CLI."""

    parser = subparsers.add_parser(
        "histogram", help="recency histograms of retrieved chunks, from request logs")
    add_common_options(parser)
    parser.add_argument("--logs", required=True, action="append",
                        help="request log file, folder or glob (repeatable)")
    parser.add_argument("--since", help="first request time to count (ISO-8601, UTC)")
    parser.add_argument("--until", help="count requests before this time (ISO-8601, UTC)")
    parser.add_argument("--quarantine", help="file for malformed log records "
                        "(default: recency/quarantine/ under a local state root)")
    parser.add_argument("--collection", help="collection whose state history to match "
                        "(default: the configured model's)")
    return parser


def _time(value: str | None, flag: str) -> datetime | None:
    try:
        return as_utc(value) if value else None
    except ValueError as exc:
        raise FreshnessError(f"{flag} {value!r} is not a time: use ISO-8601 such as "
                             "2026-01-01 or 2026-01-01T12:00:00Z") from exc


def _quarantine_path(args: argparse.Namespace, rt: Runtime) -> Path:
    if args.quarantine:
        return Path(args.quarantine)
    stamp = utc_now().strftime("%Y%m%dT%H%M%SZ")
    folder = Path(rt.store.base) / "recency" / "quarantine" if rt.store.local else Path.cwd()
    return folder / f"histogram-{stamp}.jsonl"


def duration(seconds: float | None) -> str:
    """A compact human duration: 42s, 3.5h, 12.0d."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if abs(seconds) >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def print_report(report: RecencyReport, quarantined: int, quarantine: str | None) -> None:
    """The per-shard table and the overall histograms as text."""
    c = report.counts
    print(f"retrievals {c['retrievals']}: served {c['served']}, unresolved {c['unresolved']} "
          f"(unknown ids {c['unknown']}, not live at query time {c['not_live']}), "
          f"future timestamps excluded {c['future']}")
    if quarantined:
        print(f"quarantined {quarantined} malformed log records -> {quarantine}")
    overall = report.scope("all")[0]
    print(f"stale-retrieval rate {_percent(overall['stale_rate'])}, retrieval-weighted "
          f"freshness {_percent(overall['fresh_share'])}")
    print(f"{'shard':<20}{'retrievals':>11}{'share':>8}{'stale':>8}  {'age p50':>8}{'p90':>8}"
          f"{'p99':>8}  {'lag p50':>8}{'p90':>8}{'p99':>8}")
    for r in report.scope("shard"):
        print(f"{r['key']:<20}{r['retrievals']:>11}{_percent(r['traffic_share']):>8}"
              f"{_percent(r['stale_rate']):>8}  "
              + "".join(f"{duration(r[f'content_age_p{q}_seconds']):>8}" for q in (50, 90, 99))
              + "  "
              + "".join(f"{duration(r[f'embedding_lag_p{q}_seconds']):>8}" for q in (50, 90, 99)))
    rows = [r for r in report.histogram.to_pylist() if r["scope"] == "all"]
    total = max(c["served"], 1)
    for metric in ("content_age", "embedding_lag"):
        print(metric.replace("_", " "))
        for r in (r for r in rows if r["metric"] == metric):
            share = r["retrievals"] / total
            print(f"  {r['bucket']:>7} {'#' * round(40 * share):<40} {r['retrievals']:>10} "
                  f"{_percent(share):>7}")


def run(args: argparse.Namespace, rt: Runtime) -> int:
    """Read the logs, match them to the state history and print the recency report."""
    since, until = _time(args.since, "--since"), _time(args.until, "--until")
    state = rt.shard_state(args.collection)
    versions = load_versions(state)
    if not versions.num_rows:
        raise FreshnessError(f"collection {state.collection!r} under {rt.store.uri} has no "
                             "indexed chunks: run `freshness sync` first, or pass --collection")
    ingest = read_request_logs(args.logs, _quarantine_path(args, rt))
    report = recency_report(ingest.retrievals, versions, since=since, until=until)
    if report.counts["served"]:  # the re-embedding policy weighs pending docs by these shares
        record_traffic(rt.store, report)
    if args.json:
        print(json.dumps({
            "collection": state.collection, "counts": report.counts,
            "ingest": dict(ingest.counts), "quarantine": ingest.quarantine_path,
            "buckets": [label for label, _ in BUCKETS],
            "traffic_weights": report.traffic_weights(),
            "summary": report.summary.to_pylist(), "histogram": report.histogram.to_pylist(),
        }, indent=2, default=str))
    else:
        print_report(report, ingest.counts.get("quarantined", 0), ingest.quarantine_path)
    return 0
