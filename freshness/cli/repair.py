"""`freshness repair [--shard X]`: rebuild broken shard manifests from the index payloads."""

from __future__ import annotations

import argparse
import json

from freshness.cli.common import add_common_options, settings_from_args
from freshness.runtime import Runtime


def add_parser(sub) -> None:

    p = sub.add_parser("repair", help="fix state and index both ways: manifests rebuilt from "
                                      "the index payloads, missing or damaged index shards "
                                      "rebuilt from the manifest and the source")
    add_common_options(p)
    p.add_argument("--shard", action="append",
                   help="repair only this shard, rebuilding its manifest from the index even "
                        "if it loads (repeatable)")


def run(args: argparse.Namespace, rt: Runtime | None = None) -> int:
    from freshness.integrity.repair import repair

    rt = rt or Runtime(settings_from_args(args))
    report = repair(rt, args.shard or None, tuple(args.shard or ()))
    report["repaired"] = report.pop("manifests_rebuilt")
    print(json.dumps(report, indent=2, default=str))
    return 0 if report["ok"] else 1
