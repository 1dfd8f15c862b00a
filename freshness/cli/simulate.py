"""`freshness simulate`: replay a change log against a policy and a GPU budget."""

from __future__ import annotations

import argparse
import json

from freshness.errors import ConfigError
from freshness.policy.planner import CostModel
from freshness.policy.simulator import POLICIES, ChangeLog, calibrate, compare, simulate


def add_parser(sub) -> None:
    p = sub.add_parser("simulate", help="replay a change log against a policy and GPU budget")
    p.add_argument("--snapshot", required=True, help="snapshot.parquet of the change log")
    p.add_argument("--replay", required=True, help="replay.parquet of the change log")
    p.add_argument("--policy", default="adaptive", choices=[*POLICIES, "all"])
    p.add_argument("--budget", type=float, help="GPU seconds per day (omit: use --parameter)")
    p.add_argument("--parameter", type=float,
                   help="the policy's own knob instead of calibrating to --budget")
    p.add_argument("--seed", type=int, default=0, help="seed of the Zipf popularity ranking")
    p.add_argument("--zipf", type=float, default=1.0, help="Zipf exponent of doc popularity")
    p.add_argument("--overhead-s", type=float, default=20.0, help="GPU seconds per run")
    p.add_argument("--listing-s", type=float, default=0.05,
                   help="GPU seconds per shard listed in a run")
    p.add_argument("--per-chunk-s", type=float, default=0.002, help="GPU seconds per chunk")
    p.add_argument("--chunks-per-doc", type=float, default=1.18)
    p.add_argument("--json", action="store_true", help="print JSON (always on)")


def run(args: argparse.Namespace, _rt=None) -> int:
    if args.budget is None and args.parameter is None and args.policy != "immediate":
        raise ConfigError("pass --budget GPU_SECONDS_PER_DAY (or --parameter)")
    log = ChangeLog.from_parquet(args.snapshot, args.replay, zipf_s=args.zipf, seed=args.seed)
    costs = CostModel(args.overhead_s, args.per_chunk_s, args.chunks_per_doc, args.listing_s)
    if args.policy == "all":
        rows = compare(log, [args.budget], costs)
        print(json.dumps(rows, indent=2))
        return 0
    if args.parameter is not None or args.policy == "immediate":
        result = simulate(log, args.policy, args.parameter or 0.0, costs, args.budget)
    else:
        result = calibrate(log, args.policy, args.budget, costs)
    print(json.dumps(result.as_dict(), indent=2))
    return 0
