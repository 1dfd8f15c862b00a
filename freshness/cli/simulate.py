"""`freshness simulate`: replay a change log against a policy and a GPU budget."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from freshness.errors import ConfigError
from freshness.policy import sweep
from freshness.policy.planner import CostModel
from freshness.policy.simulator import POLICIES, ChangeLog, calibrate, compare, simulate
from freshness.policy.sweep import Corpus


def add_parser(sub) -> None:
    p = sub.add_parser("simulate", help="replay a change log against a policy and GPU budget")
    p.add_argument("--snapshot", help="snapshot.parquet of the change log")
    p.add_argument("--replay", help="replay.parquet of the change log")
    p.add_argument("--corpus", action="append", default=[], metavar="NAME=FOLDER",
                   help="sweep mode: a replay folder (snapshot.parquet + replay.parquet); repeat")
    p.add_argument("--budgets", default="1,2,5,10,20",
                   help="sweep: budgets in %% of immediate's spend")
    p.add_argument("--seeds", default="0,1,2", help="sweep: popularity seeds")
    p.add_argument("--zipfs", default="0.8,1.0,1.2", help="sweep: Zipf exponents")
    p.add_argument("--out", default="docs/cadence-sweep",
                   help="sweep: writes OUT.json and OUT.md")
    p.add_argument("--embed", help="sweep: also replace the generated table in this markdown "
                                   "file (between <!-- MARKER:begin --> and <!-- MARKER:end -->)")
    p.add_argument("--marker", default="sweep", help="sweep: the --embed markers' name")
    p.add_argument("--reverse-activity", action="store_true",
                   help="sweep: each corpus with the gaps between its commits in reverse order "
                        "(activity ramps down where it ramped up; named 'NAME reversed')")
    p.add_argument("--retrievals-per-day", type=float,
                   help="the loops learn the retrieval shares as a deployment does, from a "
                        "sampled query stream of this many retrievals a day (seeded like the "
                        "popularity), instead of knowing them (sweep: corpora named 'NAME, "
                        "shares learned')")
    p.add_argument("--jobs", type=int, default=1,
                   help="sweep: processes (one corpus × exponent × seed each; same result)")
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


def _numbers(text: str, kind=float) -> list:
    return [kind(x) for x in text.split(",") if x.strip()]


def _sweep(args: argparse.Namespace, costs: CostModel) -> int:
    corpora = []
    for item in args.corpus:
        name, _, folder = item.partition("=")
        if not folder or not (Path(folder) / "replay.parquet").exists():
            raise ConfigError(f"--corpus {item!r}: pass NAME=FOLDER with FOLDER holding "
                              "snapshot.parquet and replay.parquet")
        if args.retrievals_per_day is not None:
            name = f"{name}, shares learned"
        corpora.append(Corpus(f"{name} reversed", Path(folder), True, args.retrievals_per_day)
                       if args.reverse_activity else
                       Corpus(name, Path(folder), retrievals_per_day=args.retrievals_per_day))
    result = sweep.run(corpora, _numbers(args.budgets), _numbers(args.seeds, int),
                       _numbers(args.zipfs), costs, progress=lambda line: print(line, flush=True),
                       jobs=args.jobs)
    json_path, md_path = sweep.write(result, Path(args.out))
    if args.embed:
        sweep.embed(sweep.render(result), Path(args.embed), f"<!-- {args.marker}:begin -->",
                    f"<!-- {args.marker}:end -->")
    print(f"wrote {json_path} and {md_path}")
    return 0


def run(args: argparse.Namespace, _rt=None) -> int:
    costs = CostModel(args.overhead_s, args.per_chunk_s, args.chunks_per_doc, args.listing_s)
    if args.corpus:
        return _sweep(args, costs)
    if not args.snapshot or not args.replay:
        raise ConfigError("pass --snapshot and --replay (or --corpus NAME=FOLDER to sweep)")
    if args.budget is None and args.parameter is None and args.policy != "immediate":
        raise ConfigError("pass --budget GPU_SECONDS_PER_DAY (or --parameter)")
    log = ChangeLog.from_parquet(args.snapshot, args.replay, zipf_s=args.zipf, seed=args.seed)
    if args.policy == "all":
        rows = compare(log, [args.budget], costs)
        print(json.dumps(rows, indent=2))
        return 0
    learning = {} if args.retrievals_per_day is None else {
        "retrievals_per_day": args.retrievals_per_day, "query_seed": args.seed}
    if args.parameter is not None or args.policy == "immediate":
        result = simulate(log, args.policy, args.parameter or 0.0, costs, args.budget,
                          **learning)
    else:
        result = calibrate(log, args.policy, args.budget, costs, **learning)
    print(json.dumps(result.as_dict(), indent=2))
    return 0
