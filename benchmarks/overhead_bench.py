"""Pipeline overhead: our embedding stage vs raw `SentenceTransformer.encode`.

Three throughputs on the same tldr chunks, same batch size, same device and the *same loaded
model object*, interleaved run by run so machine noise hits all alike:
- raw: `model.encode(texts, batch_size, normalize_embeddings=True)`;
- Embedder: `freshness.embed.embedding.Embedder.encode` (blocks, progress, float32 stacking);
- sync: a whole `freshness.pipeline.sync.sync` of a table source holding the docs of those
  chunks into an empty state and embedded index — its embed phase (`SyncResult.embed_seconds`)
  and its wall time, each against raw encode of exactly the chunks that sync embedded.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import duckdb

from benchmarks.common import (
    Context,
    Figure,
    chunk_texts,
    median,
    paired_ratio,
    settings_for,
    snapshot_docs,
    timed,
)

BATCH_SIZE = 64


def _docs_for(ctx: Context, n_docs: int):
    docs = snapshot_docs(ctx.snapshot)
    con = duckdb.connect()
    con.register("docs", docs)
    return con.sql(f"SELECT * FROM docs USING SAMPLE {n_docs} ROWS (reservoir, 42) "
                   "ORDER BY doc_id").to_arrow_table()


def _sync_once(ctx: Context, docs, embedder) -> tuple[float, object]:
    """Wall seconds and result of one sync of `docs` into an empty state and index."""
    from freshness.pipeline.sync import sync
    from freshness.runtime import Runtime
    from freshness.sources import TableSource

    root = Path(tempfile.mkdtemp(prefix="overhead-", dir=ctx.scratch))
    try:
        con = duckdb.connect()
        con.register("corpus", docs)
        source = TableSource("SELECT * FROM corpus", "bench:overhead", con=con)
        rt = Runtime(settings_for(root, ctx.device, BATCH_SIZE), source=source,
                     embedder=embedder)
        return timed(lambda: sync(rt))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(ctx: Context) -> dict:
    """Measure raw vs Embedder vs sync throughput (chunks/s), interleaved, median of n."""
    from freshness.embed.embedding import Embedder, load_model
    from freshness.embed.models import resolve_model

    spec = resolve_model()
    n_docs, reps = (32, 3) if ctx.quick else (96, 5)
    docs = _docs_for(ctx, n_docs)
    embedder = Embedder(spec, device=ctx.device, batch_size=BATCH_SIZE)
    model = load_model(spec, ctx.device)

    def raw(texts: list[str]):
        return model.encode(texts, batch_size=BATCH_SIZE, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=False)

    texts = chunk_texts(docs)
    _sync_once(ctx, docs, embedder)  # warm-up (model load, first-call allocations)
    raw(texts[:BATCH_SIZE])
    rows: dict[str, list[float]] = {k: [] for k in ("raw", "embedder", "sync_embed",
                                                    "sync_wall")}
    embedded = 0
    for rep in range(reps):
        order = ["raw", "embedder", "sync"] if rep % 2 == 0 else ["sync", "embedder", "raw"]
        for what in order:
            if what == "raw":
                rows["raw"].append(len(texts) / timed(lambda: raw(texts))[0])
            elif what == "embedder":
                rows["embedder"].append(len(texts) / timed(lambda: embedder.encode(texts))[0])
            else:
                wall, result = _sync_once(ctx, docs, embedder)
                embedded = result.totals["chunks_embedded"]
                if embedded != len(texts):
                    raise AssertionError(f"sync embedded {embedded} chunks, not {len(texts)}")
                rows["sync_embed"].append(embedded / result.embed_seconds)
                rows["sync_wall"].append(embedded / wall)
    raw_med = median(rows["raw"])

    def fig(metric: str, key: str, base: float, target: str | None, note: str) -> Figure:
        value = median(rows[key])
        ratio = paired_ratio(rows[key], rows["raw"])
        met = None if target is None else ratio >= 0.90
        return Figure("overhead", metric, round(value, 2), "chunks/s", reps, round(base, 2),
                      round(ratio, 3), target, met, note)

    figures = [
        Figure("overhead", "raw SentenceTransformer.encode", round(raw_med, 2), "chunks/s",
               reps, note=f"{len(texts)} tldr chunks, batch {BATCH_SIZE}, {ctx.device}"),
        fig("Embedder.encode vs raw", "embedder", raw_med, ">= 0.90",
            "same model object, same chunks"),
        fig("sync embed phase vs raw", "sync_embed", raw_med, ">= 0.90",
            f"{embedded} chunks embedded by sync of {n_docs} docs into an empty index"),
        fig("sync end-to-end vs raw", "sync_wall", raw_med, None,
            "whole sync (list, diff, chunk, embed, write Qdrant, commit) vs raw encode"),
    ]
    return {"figures": figures,
            "details": {"chunks": len(texts), "docs": n_docs, "batch_size": BATCH_SIZE,
                        "device": ctx.device, "runs": rows}}
