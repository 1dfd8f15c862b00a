"""`freshness export-history`: a git repository's history as a replay corpus for the simulator."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone

from freshness.cli.common import add_selection_options
from freshness.errors import ConfigError
from freshness.sources.files import DEFAULT_PATTERNS, split_globs


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export-history",
        help="write a git repository's history (snapshot + every change) as a replay corpus: "
             "then `freshness simulate --corpus NAME=OUT` picks a budget from your own history")
    p.add_argument("--path", required=True, help="a git clone or bare repository")
    add_selection_options(p)  # --ref (its first-parent history), --subdir, globs, shard depth
    p.set_defaults(shard_depth=1)
    p.add_argument("--since", required=True,
                   help="start date (ISO, UTC if no zone): the snapshot is the first commit at "
                        "or after it")
    p.add_argument("--out", required=True,
                   help="folder for snapshot.parquet, replay.parquet and summary.json")


def _since(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"--since {text!r} is not an ISO date: pass e.g. 2023-08-21") from exc
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def run(args: argparse.Namespace, _rt=None) -> int:
    from freshness.sources.git import GitSource
    from freshness.sources.git_history import export_history

    if args.shard_depth < 1:
        raise ConfigError(f"--shard-depth {args.shard_depth}: use 1 or more folder levels")
    source = GitSource(args.path, args.ref, args.subdir,
                       split_globs(args.include) or DEFAULT_PATTERNS,
                       split_globs(args.exclude), shard_depth=args.shard_depth)
    since = _since(args.since)
    done = export_history(source, since, args.out)
    print(json.dumps(done.summary(source, since), indent=1))
    return 0
