"""Options shared by the commands that work on a corpus, and the Settings they build."""

from __future__ import annotations

import argparse

from freshness.config import Settings


def settings_from_args(args: argparse.Namespace) -> Settings:
    kind = args.source
    if kind is None and (args.snapshot or args.replay):
        kind = "replay"
    return Settings.from_env(
        source_kind=kind, source_path=args.path, source_table=args.table,
        replay_snapshot=args.snapshot, replay_log=args.replay, replay_as_of_seq=args.as_of_seq,
        state_root=args.state_root, index_path=args.index_path, qdrant_url=args.qdrant_url,
        model=args.model, device=args.device, batch_size=args.batch_size,
    )


def add_common_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where (defaults from FRESHNESS_* variables)")
    group.add_argument("--source", choices=["folder", "table", "duckdb", "replay"])
    group.add_argument("--path", help="corpus folder, Parquet path, or DuckDB file")
    group.add_argument("--table", help="table name inside a DuckDB file")
    group.add_argument("--snapshot", help="replay source: snapshot.parquet")
    group.add_argument("--replay", help="replay source: replay.parquet")
    group.add_argument("--as-of-seq", type=int, help="replay source: state after this commit")
    group.add_argument("--state-root", help="state folder or URI (s3://…)")
    group.add_argument("--index-path", help="embedded Qdrant folder")
    group.add_argument("--qdrant-url", help="Qdrant server URL (API key: QDRANT_API_KEY)")
    group.add_argument("--model")
    group.add_argument("--device", help="auto, cpu, cuda, mps")
    group.add_argument("--batch-size", type=int)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
