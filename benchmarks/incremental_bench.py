"""Incremental vs full on the tldr change log: one sync step at ~0.1 %, 1 % and 10 % churn.

The corpus is the tldr snapshot (`--quick`: shards osx, windows, android, ~500 docs) read through
`freshness.sources.ReplaySource`. Full: `sync` of the snapshot into an empty state and embedded
index (n runs, each from scratch). Incremental: from the first full run's state, consecutive
commit ranges chosen with `ReplaySource.seek` so that each touches ≈ p × docs distinct docs, one
`sync` per range (n ranges per level). Reported: wall seconds and chunks embedded, and their
ratios to the full re-embed measured in the same process.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from benchmarks.common import (
    QUICK_SHARDS,
    Context,
    Figure,
    churn_steps,
    median,
    recording_embedder,
    settings_for,
    timed,
)

LEVELS = ((0.001, "0.1 %"), (0.01, "1 %"), (0.10, "10 %"))
TARGET_1PCT = 0.03


def _runtime(ctx: Context, root: Path, source, embedder):
    from freshness.runtime import Runtime

    return Runtime(settings_for(root, ctx.device), source=source, embedder=embedder)


def run(ctx: Context) -> dict:
    """Full re-embeds and incremental steps at three churn levels (medians of n)."""
    from freshness.embed.models import resolve_model
    from freshness.integrity.verify import verify
    from freshness.pipeline.sync import sync
    from freshness.sources import ReplaySource

    source = ReplaySource(ctx.snapshot, ctx.replay, as_of_seq=0)
    shards = list(QUICK_SHARDS) if ctx.quick else source.discover().shards
    n_docs = sum(source.listing(s).docs.num_rows for s in shards)
    embedder = recording_embedder(resolve_model(), ctx.device, 64, ctx.memo)
    _ = embedder.model  # load outside the timings
    full = []
    base_root = ctx.scratch / "incremental-base"
    for rep in range(ctx.reps):
        root = base_root if rep == 0 else ctx.scratch / f"incremental-full-{rep}"
        source.seek(0)
        wall, result = timed(lambda r=root: sync(_runtime(ctx, r, source, embedder), shards))
        full.append({"wall_s": wall, "embed_s": result.embed_seconds,
                     "chunks_embedded": result.totals["chunks_embedded"]})
        if rep:
            shutil.rmtree(root, ignore_errors=True)
    full_wall = median([f["wall_s"] for f in full])
    full_chunks = median([f["chunks_embedded"] for f in full])
    rt = _runtime(ctx, base_root, source, embedder)
    changes = source.changes().to_pylist()
    keep = set(shards)
    start, steps_out, figures = 0, {}, []
    figures.append(Figure("incremental", "full re-embed (sync into empty index)",
                          round(full_wall, 2), "s", len(full), note=(
                              f"{n_docs} docs, {int(full_chunks)} chunks, shards "
                              f"{','.join(shards)}; embed phase "
                              f"{median([f['embed_s'] for f in full]):.1f} s")))
    for fraction, label in LEVELS:
        steps = churn_steps(changes, start, n_docs, fraction, ctx.reps,
                            lambda r: r["shard"] in keep)
        rows = []
        for after, through, touched in steps:
            source.seek(through)
            wall, result = timed(lambda: sync(rt, shards))
            totals = result.totals
            rows.append({"commits": [after + 1, through], "docs_touched": touched,
                         "docs_changed": sum(totals.get(k, 0) for k in (
                             "docs_added", "docs_modified", "docs_deleted")),
                         "chunks_embedded": totals.get("chunks_embedded", 0),
                         "chunks_retired": totals.get("chunks_retired", 0),
                         "wall_s": wall, "embed_s": result.embed_seconds})
        start = steps[-1][1] if steps else start
        steps_out[label] = rows
        wall = median([r["wall_s"] for r in rows])
        chunks = median([r["chunks_embedded"] for r in rows])
        docs = median([r["docs_changed"] for r in rows])
        ratio = wall / full_wall
        target = f"<= {TARGET_1PCT:.0%} of full" if label == "1 %" else None
        figures.append(Figure(
            "incremental", f"step at ~{label} churn: wall", round(wall, 2), "s", len(rows),
            round(full_wall, 2), round(ratio, 4), target,
            ratio <= TARGET_1PCT if target else None,
            f"{docs:.0f} docs changed ({docs / n_docs:.2%}), {chunks:.0f} chunks embedded "
            f"= {chunks / full_chunks:.2%} of full"))
    checks = verify(rt, shards)
    return {"figures": figures,
            "details": {"docs": n_docs, "shards": shards, "full_runs": full,
                        "steps": steps_out, "final_seq": source.as_of_seq,
                        "verify_ok": all(c.ok for c in checks),
                        "texts_embedded_total": embedder.texts_embedded}}
