"""Scale: step costs from 10 k to 1 M docs, each step a fresh `freshness` process, as users run it.

A synthetic corpus (10 shards of short random-word docs; folder source up to 100 k docs,
Parquet table source for 1 M) is indexed with a **tiny random sentence-transformers model**
(benchmarks/tiny_model.py: one 32-wide BERT layer, MiniLM's tokenizer) so that bookkeeping, not
the model, shows. Per size: full build, no-op sync, 0.1 % churn sync, status, verify (default
and --deep at the smallest size), search; wall seconds (median of `reps` where cheap), peak RSS
of the step's process (`/usr/bin/time`), disk of state + index (allocated and apparent). The
growth exponent of a step is the least-squares slope of log(seconds) over log(docs).

    python -m benchmarks scale [--sizes 10000 100000 1000000] [--reps 3] [--out DIR]

Each step is a whole CLI process, so its figure includes the per-run fixed cost (interpreter,
imports, model load) the issue is about; `--breakdown` adds where a churn sync's time goes.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import REPO, Figure, median
from benchmarks.tiny_model import build_tiny_model

SHARDS = 10
WORDS = ("alpha beta gamma delta robot dock night index shard fresh stale query vector model "
         "chunk token orchard river cargo wheel pedal apple pear boat bike lamp").split()
TABLE_FROM = 1_000_000  # sizes from here on use the Parquet table source


def _doc(rng: random.Random, i: int) -> str:
    paragraphs = [" ".join(rng.choice(WORDS) for _ in range(40)) for _ in range(2)]
    return f"# doc {i}\n\n" + "\n\n".join(paragraphs) + "\n"


def write_folder(root: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    for s in range(SHARDS):
        (root / f"s{s:02d}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (root / f"s{i % SHARDS:02d}" / f"doc{i:07d}.md").write_text(_doc(rng, i))


def write_table(path: Path, n: int, seed: int = 0) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({
        "doc_id": [f"doc{i:07d}" for i in range(n)],
        "shard": [f"s{i % SHARDS:02d}" for i in range(n)],
        "content": [_doc(rng, i) for i in range(n)]}), path)


def churn(source: Path, n: int, fraction: float, seed: int) -> int:
    """Edit `fraction` of the docs (at least one); returns how many."""
    rng = random.Random(seed)
    picked = rng.sample(range(n), max(1, round(fraction * n)))
    if source.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        table = pq.read_table(source)
        mask = np.zeros(n, dtype=bool)
        mask[picked] = True
        content = pc.if_else(pa.array(mask), pc.binary_join_element_wise(
            table["content"], pa.scalar(f"edit {seed}\n"), ""), table["content"])
        pq.write_table(table.set_column(2, "content", content), source)
    else:
        for i in picked:
            path = source / f"s{i % SHARDS:02d}" / f"doc{i:07d}.md"
            path.write_text(path.read_text() + f"edit {seed}\n")
    return len(picked)


def _disk_mb(*paths: Path) -> tuple[float, float]:
    """(allocated, apparent) MiB under the paths."""
    allocated = apparent = 0
    for root in paths:
        for p in root.rglob("*"):
            if p.is_file():
                st = p.stat()
                allocated += st.st_blocks * 512
                apparent += st.st_size
    return allocated / 2**20, apparent / 2**20


def run_cli(args: list[str], env: dict) -> dict:
    """One `freshness` process: wall seconds, peak RSS (MiB), parsed --json output."""
    cmd = ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "freshness.cli", *args]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    rss = re.findall(r"^(\d+)$", proc.stderr, re.M)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    try:
        out = json.loads(proc.stdout) if "--json" in args else proc.stdout
    except json.JSONDecodeError:
        out = proc.stdout
    return {"seconds": wall, "rss_mb": int(rss[-1]) / 1024 if rss else None, "out": out}


def fit_exponent(sizes: list[int], seconds: list[float]) -> float | None:
    """Slope of log(seconds) over log(docs): 0 = flat, 1 = linear."""
    if len(sizes) < 2:
        return None
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


def bench_size(n: int, scratch: Path, model: Path, reps: int, env_extra: dict,
               deep: bool) -> dict:
    root = scratch / f"n{n}"
    shutil.rmtree(root, ignore_errors=True)
    table = n >= TABLE_FROM
    source = root / "docs.parquet" if table else root / "corpus"
    started = time.perf_counter()
    (write_table if table else write_folder)(source, n)
    corpus_s = time.perf_counter() - started
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "FRESHNESS_SOURCE_KIND": "table" if table else "folder",
           "FRESHNESS_SOURCE_PATH": str(source), "FRESHNESS_STATE_ROOT": str(root / "state"),
           "FRESHNESS_INDEX_PATH": str(root / "qdrant"), "FRESHNESS_MODEL": str(model),
           "FRESHNESS_DEVICE": "cpu", "FRESHNESS_BATCH_SIZE": "256", **env_extra}
    steps: dict[str, list[dict]] = {}

    def step(name: str, args: list[str]) -> dict:
        result = run_cli(args, env)
        steps.setdefault(name, []).append(result)
        print(f"[scale] n={n} {name}: {result['seconds']:.2f} s, {result['rss_mb']} MiB",
              file=sys.stderr, flush=True)
        return result

    build = step("full build", ["sync", "--json"])
    for rep in range(reps):
        step("no-op sync", ["sync", "--json"])
        edited = churn(source, n, 0.001, seed=rep + 1)
        step("0.1 % churn sync", ["sync", "--json"])
        step("status", ["status", "--json"])
        step("search (CLI)", ["search", "robot dock night", "--json"])
    step("verify", ["verify"])
    if deep:
        step("verify --deep", ["verify", "--deep"])
    allocated, apparent = _disk_mb(root / "state", root / "qdrant")
    index_alloc, index_apparent = _disk_mb(root / "qdrant")
    summary = {name: {"seconds": median([r["seconds"] for r in rs]),
                      "rss_mb": max(r["rss_mb"] or 0 for r in rs), "n": len(rs)}
               for name, rs in steps.items()}
    churn_out = steps["0.1 % churn sync"][-1]["out"]
    details = {"docs": n, "source": "table" if table else "folder", "corpus_write_s": corpus_s,
               "docs_edited_per_churn": edited,
               "chunks_total": build["out"]["totals"].get("chunks_total"),
               "churn_chunks_embedded": churn_out["totals"].get("chunks_embedded")
               if isinstance(churn_out, dict) else None,
               "churn_model_load_s": churn_out.get("model_load_seconds")
               if isinstance(churn_out, dict) else None,
               "churn_embed_s": churn_out.get("embed_seconds")
               if isinstance(churn_out, dict) else None,
               "disk_mb_allocated": allocated, "disk_mb_apparent": apparent,
               "index_mb_per_shard_allocated": index_alloc / SHARDS,
               "index_mb_per_shard_apparent": index_apparent / SHARDS, "steps": summary}
    shutil.rmtree(source, ignore_errors=True)
    return details


def run_scale(sizes: list[int], scratch: Path, reps: int = 3, env_extra: dict | None = None
              ) -> dict:
    model = build_tiny_model(scratch / "tiny-model")
    per_size = []
    for n in sizes:
        per_size.append(bench_size(n, scratch, model, reps if n < 1_000_000 else 1,
                                   env_extra or {}, deep=n == min(sizes)))
        shutil.rmtree(scratch / f"n{n}", ignore_errors=True)
    ran = [d["docs"] for d in per_size]
    exponents = {}
    for name in per_size[0]["steps"]:
        rows = [(d["docs"], d["steps"][name]["seconds"]) for d in per_size if name in d["steps"]]
        exponents[name] = fit_exponent([r[0] for r in rows], [r[1] for r in rows])
    return {"sizes": ran, "per_size": per_size, "growth_exponents": exponents}


def figures(result: dict) -> list[Figure]:
    out = []
    for d in result["per_size"]:
        for name, s in d["steps"].items():
            out.append(Figure("scale", f"{name}, {d['docs']:,} docs ({d['source']})",
                              round(s["seconds"], 2), "s", s["n"],
                              note=f"peak RSS {s['rss_mb']:.0f} MiB"))
    for name, e in result["growth_exponents"].items():
        goal = "≤ 0.1" if name in ("no-op sync", "0.1 % churn sync") else None
        out.append(Figure("scale", f"growth exponent: {name}",
                          None if e is None else round(e, 3), "", len(result["sizes"]),
                          target=goal, met=None if goal is None or e is None else e <= 0.1))
    return out


def run(ctx) -> dict:
    sizes = [10_000] if ctx.quick else [10_000, 100_000, 1_000_000]
    result = run_scale(sizes, ctx.scratch / "scale", reps=1 if ctx.quick else 3)
    return {"figures": figures(result), "details": result}


def markdown(result: dict) -> str:
    names = list(result["per_size"][0]["steps"])
    head = "| step | " + " | ".join(f"{d['docs']:,} docs" for d in result["per_size"]) + \
        " | growth exponent |"
    lines = [head, "|---" * (len(result["per_size"]) + 2) + "|"]
    for name in names:
        cells = []
        for d in result["per_size"]:
            s = d["steps"].get(name)
            cells.append(f"{s['seconds']:.2f} s ({s['rss_mb']:.0f} MiB)" if s else "–")
        e = result["growth_exponents"].get(name)
        lines.append(f"| {name} | " + " | ".join(cells) +
                     f" | {'–' if e is None else f'{e:.2f}'} |")
    lines.append("| disk (state + index, allocated / apparent) | " + " | ".join(
        f"{d['disk_mb_allocated']:.0f} / {d['disk_mb_apparent']:.0f} MiB"
        for d in result["per_size"]) + " | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m benchmarks scale")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--scratch", type=Path, default=None)
    parser.add_argument("--tag", default="scale")
    parser.add_argument("--many-shards", type=int, default=0,
                        help="only measure the index disk of this many one-doc shards")
    args = parser.parse_args(argv)
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="freshness-scale-"))
    if args.many_shards:
        result = many_shards_disk(scratch, args.many_shards)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "many-shards-latest.json").write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
        return 0
    started = time.perf_counter()
    result = run_scale(args.sizes, scratch, args.reps)
    from benchmarks.common import machine_info

    result["machine"] = machine_info()
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.tag}-latest.json").write_text(json.dumps(result, indent=2, default=str))
    table = markdown(result)
    (args.out / f"{args.tag}-latest.md").write_text(
        f"# Scale benchmark\n\n`python -m benchmarks scale --sizes {' '.join(map(str, args.sizes))}"
        f" --reps {args.reps}`, {result['wall_seconds']} s, commit "
        f"{result['machine']['commit']}, load average at start "
        f"{result['machine']['load_average_start']}. Tiny random model (benchmarks/"
        "tiny_model.py); every step is a fresh CLI process.\n\n" + table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())


def many_shards_disk(scratch: Path, shards: int = 10_000, legacy_sample: int = 200,
                     dim: int = 32, folders: int = 16) -> dict:
    """Disk of `shards` one-point corpus shards in the embedded index: shared edge folders
    (the default for new collections) vs one folder per shard (measured on `legacy_sample`
    shards and scaled). Also a filtered search over all shards."""
    from freshness.index.base import PointRecord
    from freshness.index.edge import EdgeIndex
    from freshness.util.hashing import point_id

    rng = np.random.default_rng(0)
    out: dict = {"shards": shards, "legacy_sample": legacy_sample, "dim": dim}
    root = scratch / "many-shards"
    shutil.rmtree(root, ignore_errors=True)
    index = EdgeIndex(root / "shared", folders=folders)
    index.ensure_collection("c", dim)
    names = [f"t{i:05d}" for i in range(shards)]
    by_folder: dict[Path, list[str]] = {}
    for name in names:
        by_folder.setdefault(index._shard_dir("c", name), []).append(name)
    started = time.perf_counter()
    for members in by_folder.values():
        with index.open_shard("c", members[0]) as session:
            session.upsert([PointRecord(point_id(n, "h", 0), rng.standard_normal(dim),
                                        {"shard": n, "doc_id": n}) for n in members])
    out["shared_write_s"] = time.perf_counter() - started
    alloc, apparent = _disk_mb(root / "shared")
    out.update(shared_folders=len(by_folder), shared_mb_allocated=alloc,
               shared_mb_apparent=apparent)
    t0 = time.perf_counter()
    index.search("c", rng.standard_normal(dim), 10)
    out["shared_search_all_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    index.search("c", rng.standard_normal(dim), 10, shards=names[:3])
    out["shared_search_3_shards_s"] = time.perf_counter() - t0
    legacy = EdgeIndex(root / "legacy")  # the default: one folder per shard
    legacy.ensure_collection("c", dim)
    started = time.perf_counter()
    for name in names[:legacy_sample]:
        with legacy.open_shard("c", name) as session:
            session.upsert([PointRecord(point_id(name, "h", 0), rng.standard_normal(dim),
                                        {"shard": name, "doc_id": name})])
    out["legacy_write_s_per_shard"] = (time.perf_counter() - started) / legacy_sample
    alloc, apparent = _disk_mb(root / "legacy")
    out.update(legacy_mb_allocated_per_shard=alloc / legacy_sample,
               legacy_mb_apparent_per_shard=apparent / legacy_sample,
               legacy_gb_apparent_at_n=apparent / legacy_sample * shards / 1024,
               legacy_gb_allocated_at_n=alloc / legacy_sample * shards / 1024)
    t0 = time.perf_counter()
    legacy.search("c", rng.standard_normal(dim), 10)
    out["legacy_search_s_per_shard"] = (time.perf_counter() - t0) / legacy_sample
    out["folders"] = folders
    shutil.rmtree(root, ignore_errors=True)
    return out
