"""Options shared by the commands that work on a corpus, and the Settings they build."""

from __future__ import annotations

import argparse

from freshness.config import Settings
from freshness.sources.registry import SOURCE_KINDS


def settings_from_args(args: argparse.Namespace) -> Settings:
    kind = args.source
    if kind is None and (args.snapshot or args.replay):
        kind = "replay"
    return Settings.from_env(
        source_kind=kind, source_path=args.path, source_table=args.table,
        source_dsn=args.dsn, source_ref=args.ref, source_subdir=args.subdir,
        source_include=args.include, source_exclude=args.exclude, shard_depth=args.shard_depth,
        replay_snapshot=args.snapshot, replay_log=args.replay, replay_as_of_seq=args.as_of_seq,
        state_root=args.state_root, index_path=args.index_path, qdrant_url=args.qdrant_url,
        model=args.model, device=args.device, batch_size=args.batch_size,
    )


def add_selection_options(group) -> None:
    """Which files of a folder or git repository are docs, and their shards (the sources' rule;
    also what `export-history` replays)."""
    group.add_argument("--ref", help="git source: branch, tag or commit (default HEAD)")
    group.add_argument("--subdir", help="git source: the folder of the repository to index")
    group.add_argument("--include", help="folder/git: comma-separated globs to index "
                       "(default *.md,*.markdown,*.txt,*.rst; with '/' a glob matches the path)")
    group.add_argument("--exclude", help="folder/git: comma-separated globs to leave out")
    group.add_argument("--shard-depth", type=int, help="folder/git: folder levels per shard "
                       "name (2: tenants/acme)")


def add_common_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where (defaults from FRESHNESS_* variables)")
    group.add_argument("--source", choices=list(SOURCE_KINDS))
    group.add_argument("--path", help="corpus folder or URI (s3://…), Parquet path, DuckDB "
                       "file, or git repository")
    group.add_argument("--table", help="table name inside a DuckDB file or PostgreSQL database")
    group.add_argument("--dsn", help="postgres source: connection string (or "
                       "FRESHNESS_SOURCE_DSN, which keeps it out of the process list)")
    add_selection_options(group)
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
