"""Benchmark suite entry point.

    python -m benchmarks run [--quick] [--gpu] [--data PATH] [--out DIR] [--only NAME ...]
    python -m benchmarks gpu [--device cuda|cpu] [--quick] [--data PATH] [--out DIR]
    python -m benchmarks scale [--sizes 10000 100000 1000000] [--reps 3]
    python -m benchmarks fixedcost [--docs 50000] [--reps 3]

`run` executes the benchmarks in order (the incremental one first: its full re-embeds also
compute the vectors that later, un-timed set-up steps reuse) and writes
`<out>/latest.md` and `<out>/latest.json` (default out: benchmarks/results).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchmarks.common import DEFAULT_DATA, Context  # noqa: E402
from benchmarks.suite import MODULES, run_suite  # noqa: E402

SUITE = ("incremental", "langchain", "overhead", "onnx", "diff", "sensor", "recency", "sources")
RESULTS = Path(__file__).resolve().parent / "results"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the suite, write latest.md/latest.json")
    run.add_argument("--quick", action="store_true", help="small sizes (< 5 min on 2 cores)")
    run.add_argument("--gpu", action="store_true", help="also run the GPU benchmark")
    run.add_argument("--only", nargs="+", choices=sorted(MODULES), help="run just these")
    gpu = sub.add_parser("gpu", help="GPU throughput/memory per batch size (needs CUDA)")
    gpu.add_argument("--device", default="cuda", help="cuda (default) or cpu (smoke check)")
    gpu.add_argument("--quick", action="store_true", help="two batch sizes, few chunks")
    for p in (run, gpu):
        p.add_argument("--data", type=Path, default=DEFAULT_DATA,
                       help=f"tldr-replay folder (default {DEFAULT_DATA})")
        p.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    return parser


STANDALONE = {"scale": "benchmarks.scale_bench", "fixedcost": "benchmarks.fixed_cost_bench"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in STANDALONE:  # own options; no tldr data needed
        import importlib

        return importlib.import_module(STANDALONE[argv[0]]).main(argv[1:])
    args = _parser().parse_args(argv)
    command = "python -m benchmarks " + shlex.join(argv if argv is not None else sys.argv[1:])
    if not (args.data / "snapshot.parquet").exists():
        print(f"no tldr-replay data at {args.data}: pass --data PATH", file=sys.stderr)
        return 2
    if args.command == "gpu":
        from benchmarks.gpu_bench import main as gpu_main

        return gpu_main(args.device, args.quick, args.data, args.out)
    from benchmarks.report import write

    names = args.only or list(SUITE) + (["gpu"] if args.gpu else [])
    with tempfile.TemporaryDirectory(prefix="freshness-bench-") as tmp:
        ctx = Context(quick=args.quick, data=args.data.resolve(), scratch=Path(tmp))
        results = run_suite(names, ctx, command)
    md, js = write(results, args.out)
    print(md.read_text())
    print(f"wrote {md} and {js}", file=sys.stderr)
    return 1 if any(b.get("error") for b in results["benchmarks"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
