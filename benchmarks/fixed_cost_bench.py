"""Where the seconds of a small sync go: one 0.1 % churn sync in a fresh process, by phase.

    python -m benchmarks fixedcost [--docs 50000] [--reps 3] [--model tiny|packaged]

Builds a folder corpus (10 shards) with the tiny random model (or the packaged MiniLM), then
per rep edits 0.1 % of the docs and runs one sync in a new process, in-process model and
through an embedding endpoint (`python -m freshness.embed.server` started here and kept warm),
interleaved. The child times each phase by wrapping the sync's own functions: imports, source
listing, manifest reads, index id reads, chunking, model load, embedding, index writes +
manifest commit; "interpreter" is the parent's wall minus the child's. Medians per phase.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from benchmarks.common import REPO, median

PHASES = ("interpreter start/exit", "imports", "source listing", "manifest reads",
          "index id reads", "chunking", "model load / endpoint check", "embedding",
          "index writes + manifest commit", "other")


def child() -> None:
    """Run one sync with phase timers; print the phases as JSON (run in a fresh process)."""
    started = time.perf_counter()
    import freshness.pipeline.sync as sync_module
    from freshness.config import Settings
    from freshness.runtime import Runtime
    from freshness.state.manifest import ShardStateStore

    phases: dict[str, float] = defaultdict(float)
    phases["imports"] = time.perf_counter() - started

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                phases[name] += time.perf_counter() - t0
        return wrapper

    rt = Runtime(Settings.from_env())
    source, index = rt.source, rt.index
    source.listing = timed("source listing", source.listing)
    index.shard_point_ids = timed("index id reads", index.shard_point_ids)
    ShardStateStore.load = timed("manifest reads", ShardStateStore.load)
    sync_module._apply_shard = timed("index writes + manifest commit", sync_module._apply_shard)
    chunker = rt.chunker  # tokenizer load counts as chunking
    chunker.chunk_docs = timed("chunking", chunker.chunk_docs)
    t0 = time.perf_counter()
    result = sync_module.sync(rt)
    wall = time.perf_counter() - t0
    phases["chunking"] += 0.0
    phases["model load / endpoint check"] = result.model_load_seconds
    phases["embedding"] = result.embed_seconds
    phases["other"] = wall - sum(v for k, v in phases.items() if k != "imports")
    phases["total_in_child"] = time.perf_counter() - started
    phases["chunks_embedded"] = result.totals.get("chunks_embedded", 0)
    print(json.dumps(phases))


def _run_child(env: dict) -> dict:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "benchmarks.fixed_cost_bench", "--child"],
                          cwd=REPO, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    phases = json.loads(proc.stdout.strip().splitlines()[-1])
    phases["interpreter start/exit"] = wall - phases.pop("total_in_child")
    phases["wall"] = wall
    return phases


def _start_server(model: str, env: dict) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "freshness.embed.server", "--port", "0",
                             "--device", "cpu", "--model", model], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if not line.startswith("serving"):
        proc.kill()
        raise RuntimeError(f"embedding server did not start: {line!r}")
    return proc, line.split(" on ", 1)[1].strip()


def run_fixed_cost(scratch: Path, docs: int, reps: int, model: str) -> dict:
    from benchmarks.scale_bench import churn, write_folder
    from benchmarks.tiny_model import build_tiny_model

    if model == "tiny":
        model = str(build_tiny_model(scratch / "tiny-model"))
    corpus = scratch / "corpus"
    if not corpus.exists():
        write_folder(corpus, docs)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "FRESHNESS_SOURCE_PATH": str(corpus), "FRESHNESS_MODEL": model,
           "FRESHNESS_DEVICE": "cpu", "FRESHNESS_BATCH_SIZE": "256"}
    local = {**env, "FRESHNESS_STATE_ROOT": str(scratch / "state-local"),
             "FRESHNESS_INDEX_PATH": str(scratch / "qdrant-local")}
    server, url = _start_server(model, env)
    served = Path(model).name if Path(model).is_dir() else model  # the id the server lists
    try:
        remote = {**env, "FRESHNESS_STATE_ROOT": str(scratch / "state-endpoint"),
                  "FRESHNESS_INDEX_PATH": str(scratch / "qdrant-endpoint"),
                  "FRESHNESS_EMBEDDING_BACKEND": "endpoint", "FRESHNESS_EMBEDDING_URL": url,
                  "FRESHNESS_MODEL": served, "FRESHNESS_EMBEDDING_TOKENIZER": model}
        builds = {"in-process": _run_child(local)["wall"], "endpoint": _run_child(remote)["wall"]}
        runs: dict[str, list[dict]] = {"in-process": [], "endpoint": []}
        for rep in range(reps):
            churn(corpus, docs, 0.001, seed=100 + rep)
            for name, e in (("in-process", local), ("endpoint", remote)):
                runs[name].append(_run_child(e))
                print(f"[fixedcost] {name} rep {rep}: {runs[name][-1]['wall']:.2f} s",
                      file=sys.stderr, flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {"docs": docs, "model": model, "reps": reps, "full_build_s": builds,
            "median": {name: {p: median([r.get(p, 0.0) for r in rs])
                              for p in (*PHASES, "wall", "chunks_embedded")}
                       for name, rs in runs.items()},
            "runs": runs}


def markdown(result: dict) -> str:
    cols = list(result["median"])
    lines = ["| phase | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for phase in (*PHASES, "wall"):
        lines.append(f"| {phase} | " + " | ".join(
            f"{result['median'][c][phase]:.2f} s" for c in cols) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m benchmarks fixedcost")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--docs", type=int, default=50_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--model", default="tiny", help="tiny (random, built here) or a model")
    parser.add_argument("--scratch", type=Path)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--tag", default="fixedcost")
    args = parser.parse_args(argv)
    if args.child:
        child()
        return 0
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="freshness-fixed-"))
    result = run_fixed_cost(scratch, args.docs, args.reps, args.model)
    from benchmarks.common import machine_info

    result["machine"] = machine_info()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.tag}-latest.json").write_text(json.dumps(result, indent=2, default=str))
    table = markdown(result)
    (args.out / f"{args.tag}-latest.md").write_text(
        f"# Fixed cost of a 0.1 % churn sync, {args.docs:,} docs\n\nMedian of {args.reps}, "
        f"commit {result['machine']['commit']}, load average at start "
        f"{result['machine']['load_average_start']}.\n\n{table}\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
