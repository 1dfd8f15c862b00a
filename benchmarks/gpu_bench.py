"""GPU throughput: chunks/s at fp16 per batch size, peak GPU memory, ratio to raw encode.

    python -m benchmarks gpu [--device cuda|cpu] [--quick] [--data PATH] [--out DIR]

Self-contained and offline: the packaged model, tldr chunks from `--data`. For each batch size
(32 … 1024) it times `freshness.embed.embedding.Embedder.encode` (fp16 on CUDA via `load_model`) and
raw `SentenceTransformer.encode` on the same loaded model and chunks, interleaved, median of 3,
with `torch.cuda.max_memory_allocated` per run. On a machine without CUDA it prints why and
exits 0 without measuring (`--device cpu --quick` runs the same code on CPU as a smoke check).
Writes `<out>/gpu-latest.md` and `.json`; `python -m benchmarks run --gpu` adds it to the suite.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Context, Figure, chunk_texts, median, paired_ratio, snapshot_docs

BATCH_SIZES = (32, 64, 128, 256, 512, 1024)
TIME_BUDGET_S = 240.0


def cuda_problem(device: str) -> str | None:
    """Why this device cannot be benchmarked here, or None."""
    if device == "cpu":
        return None
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return ("CUDA is not available here (torch.cuda.is_available() is False; torch "
                f"{torch.__version__}): run on a GPU machine with a CUDA build of torch, or "
                "pass --device cpu --quick for a smoke check")
    return None


def run(ctx: Context, batch_sizes: tuple[int, ...] | None = None) -> dict:
    """Per batch size: Embedder vs raw chunks/s and peak memory (CUDA), median of ctx.reps."""
    problem = cuda_problem(ctx.device)
    if problem:
        return {"figures": [], "details": {"skipped": problem}}
    import torch

    from freshness.embed.embedding import Embedder, load_model
    from freshness.embed.models import resolve_model

    cuda = ctx.device.startswith("cuda")
    spec = resolve_model()
    texts = chunk_texts(snapshot_docs(ctx.snapshot), limit=96 if ctx.quick else None)
    if not ctx.quick:
        texts = (texts * 2)[:8192]  # enough work per run to keep a large batch busy
    sizes = batch_sizes or ((32, 64) if ctx.quick else BATCH_SIZES)
    model = load_model(spec, ctx.device)  # fp16 on CUDA
    started, rows, figures = time.perf_counter(), {}, []

    def timed_run(fn) -> tuple[float, float | None]:
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
        return len(texts) / seconds, peak

    for size in sizes:
        if time.perf_counter() - started > TIME_BUDGET_S:
            rows[size] = {"skipped": "time budget spent"}
            continue
        embedder = Embedder(spec, device=ctx.device, batch_size=size)

        def raw(bs: int = size) -> None:
            model.encode(texts, batch_size=bs, normalize_embeddings=True,
                         convert_to_numpy=True, show_progress_bar=False)

        embedder.encode(texts[:size])  # warm-up at this shape
        runs: dict[str, list] = {"raw": [], "embedder": [], "raw_mb": [], "embedder_mb": []}
        for rep in range(ctx.reps):
            order = ("raw", "embedder") if rep % 2 == 0 else ("embedder", "raw")
            for name in order:
                speed, peak = timed_run(raw if name == "raw" else
                                        lambda e=embedder: e.encode(texts))
                runs[name].append(speed)
                runs[f"{name}_mb"].append(peak)
        rows[size] = runs
        ours, base = median(runs["embedder"]), median(runs["raw"])
        ratio = paired_ratio(runs["embedder"], runs["raw"])
        peak = max(runs["embedder_mb"]) if cuda else None
        figures.append(Figure(
            "gpu", f"batch {size}: Embedder.encode vs raw", round(ours, 1), "chunks/s",
            ctx.reps, round(base, 1), round(ratio, 3), ">= 0.90", ratio >= 0.90,
            f"{len(texts)} chunks; peak GPU memory {peak:.0f} MiB" if peak is not None
            else f"{len(texts)} chunks on {ctx.device}"))
    details = {"device": ctx.device, "chunks": len(texts), "runs": rows,
               "dtype": str(next(model.parameters()).dtype)}
    if cuda:
        details["gpu"] = torch.cuda.get_device_name(0)
    return {"figures": figures, "details": details}


def main(device: str, quick: bool, data: Path, out: Path) -> int:
    """`python -m benchmarks gpu`: run, print the table, write gpu-latest.{md,json}."""
    from benchmarks.report import write
    from benchmarks.suite import run_suite

    problem = cuda_problem(device)
    if problem:
        print(f"benchmarks gpu: skipped: {problem}", file=sys.stderr)
        return 0
    with tempfile.TemporaryDirectory(prefix="freshness-gpu-") as tmp:
        ctx = Context(quick=quick, data=data.resolve(), scratch=Path(tmp), device=device)
        results = run_suite(["gpu"], ctx, f"python -m benchmarks gpu --device {device}"
                            + (" --quick" if quick else ""), gpu_device=device)
    md, js = write(results, out, stem="gpu-latest")
    print(md.read_text())
    print(f"wrote {md} and {js}", file=sys.stderr)
    return 1 if results["benchmarks"]["gpu"].get("error") else 0
