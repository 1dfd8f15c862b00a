"""`freshness repair [--shard X]`: rebuild broken shard manifests from the index payloads."""

from __future__ import annotations

import argparse
import json

from freshness.cli.common import add_common_options, settings_from_args
from freshness.runtime import Runtime


def add_parser(sub) -> None:

    p = sub.add_parser("repair", help="rebuild shard manifests from the index payloads "
                                      "(default: every shard whose manifest is unreadable)")
    add_common_options(p)
    p.add_argument("--shard", action="append",
                   help="rebuild this shard even if its manifest loads (repeatable)")


def run(args: argparse.Namespace, rt: Runtime | None = None) -> int:
    from freshness.integrity.repair import broken_shards, repair_shard

    rt = rt or Runtime(settings_from_args(args))
    shards = args.shard or broken_shards(rt)
    reports = [repair_shard(rt, s) for s in shards]
    print(json.dumps({"collection": rt.collection, "repaired": reports}, indent=2,
                     default=str))
    return 0
