"""ONNX Runtime on CPU vs torch: speed, cosine agreement and top-10 neighbour overlap.

The packaged model is exported with `torch.onnx.export` (fp32) and quantised with
`onnxruntime.quantization.quantize_dynamic` (int8, per-channel weights). Speed: the same tldr
chunks, same batch size, interleaved with raw torch `SentenceTransformer.encode`. Agreement:
a corpus of tldr chunks and a query set of tldr page titles + first description line, embedded
by each backend; cosine of each chunk's vector with torch's, and, per query, the share of
torch's top-10 chunks that the backend also ranks in its top 10.
"""

from __future__ import annotations

import re
import time

import numpy as np

from benchmarks.common import (
    Context,
    Figure,
    chunk_texts,
    median,
    paired_ratio,
    snapshot_docs,
    timed,
)

BATCH_SIZE = 64
TOP_K = 10


def queries_from(docs, limit: int) -> list[str]:
    """'tar: Archiving utility.'-style queries from tldr pages (title + first `>` line)."""
    out = []
    for text in docs["content"].to_pylist():
        title = re.search(r"^#\s*(.+)$", text, re.M)
        line = re.search(r"^>\s*(.+)$", text, re.M)
        if title and line:
            out.append(f"{title.group(1).strip()}: {line.group(1).strip()}")
        if len(out) == limit:
            break
    return out


def top_k_overlap(ref_q: np.ndarray, ref_c: np.ndarray, q: np.ndarray, c: np.ndarray,
                  k: int = TOP_K) -> float:
    """Mean over queries of |top-k(ref) ∩ top-k(candidate)| / k (cosine = dot product)."""
    ref = np.argsort(-(ref_q @ ref_c.T), axis=1)[:, :k]
    got = np.argsort(-(q @ c.T), axis=1)[:, :k]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ref, got)]))


def _prepare(ctx: Context):
    from benchmarks.onnx_embedder import OnnxEmbedder, export, quantize
    from freshness.embed.models import resolve_model

    spec = resolve_model()
    folder = ctx.scratch / "onnx"
    started = time.perf_counter()
    fp32 = export(spec.location, folder / "model.onnx")
    int8 = quantize(fp32, folder / "model-int8.onnx")
    seconds = time.perf_counter() - started
    threads = __import__("torch").get_num_threads()
    return ({"onnx fp32": OnnxEmbedder(fp32, spec.location, BATCH_SIZE, threads),
             "onnx int8": OnnxEmbedder(int8, spec.location, BATCH_SIZE, threads)},
            seconds, {"fp32_mb": round(fp32.stat().st_size / 2**20, 1),
                      "int8_mb": round(int8.stat().st_size / 2**20, 1), "threads": threads})


def run(ctx: Context) -> dict:
    """Speed ratios (interleaved, median of n) and agreement of fp32 and int8 ONNX vs torch."""
    from freshness.embed.embedding import load_model
    from freshness.embed.models import resolve_model

    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return {"figures": [], "details": {"skipped": "onnxruntime is not installed "
                                                      "(pip install -e '.[bench]')"}}
    model = load_model(resolve_model(), "cpu")
    backends, export_s, files = _prepare(ctx)

    def torch_encode(texts: list[str]) -> np.ndarray:
        return model.encode(texts, batch_size=BATCH_SIZE, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=False)

    encoders = {"torch": torch_encode, **{k: v.encode for k, v in backends.items()}}
    docs = snapshot_docs(ctx.snapshot)
    n_speed, n_corpus, n_queries, reps = (48, 200, 50, 3) if ctx.quick else (128, 2000, 200, 5)
    all_chunks = chunk_texts(docs)
    stride = max(1, len(all_chunks) // n_corpus)
    corpus = all_chunks[::stride][:n_corpus]
    speed_set = all_chunks[1::stride][:n_speed]
    queries = queries_from(docs.take(np.random.default_rng(7).permutation(docs.num_rows)),
                           n_queries)
    for encode in encoders.values():  # warm-up
        encode(speed_set[:BATCH_SIZE])
    speeds: dict[str, list[float]] = {k: [] for k in encoders}
    for rep in range(reps):
        names = list(encoders) if rep % 2 == 0 else list(reversed(encoders))
        for name in names:
            speeds[name].append(len(speed_set) / timed(lambda e=encoders[name]: e(speed_set))[0])
    ref_c = ctx.memo.encode(corpus, torch_encode)  # torch vectors (memo: computed once)
    ref_q = torch_encode(queries)
    torch_speed = median(speeds["torch"])
    figures = [Figure("onnx", "torch CPU encode", round(torch_speed, 2), "chunks/s", reps,
                      note=f"{len(speed_set)} chunks, batch {BATCH_SIZE}, "
                           f"{files['threads']} threads")]
    agreement = {}
    for name in backends:
        vec_c, vec_q = encoders[name](corpus), encoders[name](queries)
        cosines = np.sum(vec_c * ref_c, axis=1)
        overlap = top_k_overlap(ref_q, ref_c, vec_q, vec_c)
        agreement[name] = {"cosine_mean": float(cosines.mean()),
                           "cosine_min": float(cosines.min()), "top10_overlap": overlap}
        speed = median(speeds[name])
        ratio = paired_ratio(speeds[name], speeds["torch"])
        figures += [
            Figure("onnx", f"{name} speed vs torch", round(speed, 2), "chunks/s", reps,
                   round(torch_speed, 2), round(ratio, 3), "> 1.0 to be the CPU default",
                   ratio > 1.0),
            Figure("onnx", f"{name} cosine vs torch (mean / min)", round(float(cosines.mean()),
                   6), "cosine", 1, None, None, None, None,
                   f"min {cosines.min():.6f} over {len(corpus)} chunks"),
            Figure("onnx", f"{name} top-{TOP_K} neighbour overlap", round(overlap, 4),
                   "share", 1, None, None, ">= 0.99", overlap >= 0.99,
                   f"{len(queries)} title queries vs {len(corpus)} chunks (deterministic)"),
        ]
    recommend = [n for n in backends if paired_ratio(speeds[n], speeds["torch"]) > 1.0
                 and agreement[n]["top10_overlap"] >= 0.99]
    return {"figures": figures,
            "details": {"export_and_quantize_seconds": round(export_s, 1), **files,
                        "speed_runs": speeds, "agreement": agreement,
                        "recommend_cpu_default": recommend or None,
                        "corpus_chunks": len(corpus), "queries": len(queries),
                        "quantization": "quantize_dynamic QInt8, per_channel=True"}}
