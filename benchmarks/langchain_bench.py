"""Us vs LangChain's indexing API over the same ~1 %-churn steps of the tldr change log.

Systems, all fed the same corpus table and the same SentenceTransformer (batch 64, same device):
- `ours (edge)`: `freshness.pipeline.sync.sync` on a table source, embedded Qdrant (qdrant-edge);
- `ours (qdrant-client local)`: the same, on qdrant-client local mode (LangChain's backend here);
- `langchain`: `index(docs, SQLRecordManager, QdrantVectorStore, cleanup="full")`, given the full
  current corpus each step, chunked by our Chunker into Documents with `source_id` metadata.
Initial builds are not timed (their vectors come from the shared memo); each timed step runs
the systems in rotating order. Per step: wall seconds (LangChain: chunking + index()),
embeddings computed, deletes; after the last step each index is compared with the source as a
set of (doc id, chunk text). Corpus sizes are nested path subsets (500, 1 k, 2 k, 4 k docs).
A separate toy check shows that `cleanup="scoped_full"` leaves deleted docs behind.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb

from benchmarks.common import (
    QUICK_SHARDS,
    Context,
    Figure,
    churn_steps,
    median,
    paired_ratio,
    recording_embedder,
    settings_for,
    timed,
)
from benchmarks.langchain_peer import (
    LangChainIndex,
    ReplayCorpus,
    counting_embeddings,
    expected_pairs,
    ours_pairs,
    without,
)

TARGET_SPEEDUP = 3.0
SYSTEMS = ("ours (edge)", "ours (qdrant-client local)", "langchain")


class Ours:
    """A runtime over an in-memory table registered in DuckDB; `set(table)` moves the source."""

    def __init__(self, ctx: Context, root: Path, embedder, table, client_index: bool) -> None:
        from freshness.runtime import Runtime
        from freshness.sources import TableSource

        self.con = duckdb.connect()
        self.con.register("corpus", table)
        self.embedder = embedder
        index = None
        if client_index:
            from freshness.index.client import ClientIndex

            index = ClientIndex(path=str(root / "qdrant-client"))
        source = TableSource("SELECT * FROM corpus", "bench:langchain", con=self.con)
        self.rt = Runtime(settings_for(root, ctx.device), source=source, index=index,
                          embedder=embedder)

    def set(self, table) -> None:
        self.con.register("corpus", table)  # the source's views read it by name

    def step(self) -> dict:
        from freshness.pipeline.sync import sync

        before, embed_s = self.embedder.texts_embedded, self.embedder.seconds
        wall, result = timed(lambda: sync(self.rt))
        totals = result.totals
        return {"wall_s": wall, "embedded": self.embedder.texts_embedded - before,
                "embed_s": self.embedder.seconds - embed_s,
                "deleted_points": totals.get("chunks_retired", 0),
                "docs_deleted": totals.get("docs_deleted", 0)}


def _lc_step(lc: LangChainIndex, embeddings, table) -> dict:
    before, embed_s = embeddings.texts, embeddings.seconds
    chunk_s, docs = timed(lambda: lc.documents(table))
    index_s, result = timed(lambda: lc.index(docs))
    return {"wall_s": chunk_s + index_s, "chunk_s": chunk_s, "index_s": index_s,
            "embed_s": embeddings.seconds - embed_s,
            "embedded": embeddings.texts - before, "deleted_points": result["num_deleted"],
            "added": result["num_added"], "skipped": result["num_skipped"]}


def _size_run(ctx: Context, corpus: ReplayCorpus, changes: list[dict], fraction: float,
              model, chunker, label: str) -> dict:
    from freshness.embed.models import resolve_model

    root = ctx.scratch / f"lc-{label}"
    embedder_e = recording_embedder(resolve_model(), ctx.device, 64, ctx.memo)
    embedder_c = recording_embedder(resolve_model(), ctx.device, 64, ctx.memo)
    embeddings = counting_embeddings(model, ctx.memo)
    table = corpus.state(0, fraction)
    n_docs = table.num_rows
    edge = Ours(ctx, root / "edge", embedder_e, table, client_index=False)
    client = Ours(ctx, root / "client", embedder_c, table, client_index=True)
    lc = LangChainIndex(root / "langchain", embeddings, chunker)
    for system in (edge, client):  # un-timed initial builds from the memo
        system.embedder.use_memo = True
        system.step()
        system.embedder.use_memo = False
    embeddings.use_memo = True
    lc.index(lc.documents(table))
    embeddings.use_memo = False
    steps = churn_steps(changes, 0, n_docs, 0.01, ctx.reps, corpus.member(fraction))
    rows = []
    for i, (after, through, touched) in enumerate(steps):
        table = corpus.state(through, fraction)
        row = {"commits": [after + 1, through], "docs_touched": touched}
        order = SYSTEMS[i % 3:] + SYSTEMS[:i % 3]
        for name in order:
            if name == "langchain":
                row[name] = _lc_step(lc, embeddings, table)
            else:
                system = edge if name == "ours (edge)" else client
                system.set(table)
                row[name] = system.step()
        rows.append(row)
    want = expected_pairs(chunker, table)
    equal = {"ours (edge)": ours_pairs(edge.rt) == want,
             "ours (qdrant-client local)": ours_pairs(client.rt) == want,
             "langchain": lc.pairs() == want}
    lc.close()
    client.rt.index.client.close()
    shutil.rmtree(root, ignore_errors=True)
    return {"docs": n_docs, "chunks": len(want), "steps": rows, "index_equals_source": equal}


def scoped_full_check(ctx: Context, corpus: ReplayCorpus, model, chunker) -> dict:
    """Index 20 docs, drop 3 from the source, re-index: what does each cleanup mode leave?"""
    docs = corpus.state(0).slice(0, 20)
    gone = docs["doc_id"].to_pylist()[:3]
    left = {}
    for mode in ("scoped_full", "full"):
        lc = LangChainIndex(ctx.scratch / f"scoped-{mode}", counting_embeddings(model, ctx.memo),
                            chunker, in_memory=True)
        lc.index(lc.documents(docs), cleanup=mode)
        lc.index(lc.documents(without(docs, gone)), cleanup=mode)
        left[mode] = sorted({d for d, _ in lc.pairs()} & set(gone))
        lc.close()
    return {"deleted_docs": gone, "left_in_index": left}


def _medians(sized: dict, name: str, key: str) -> float:
    if key == "overhead_s":  # the step minus the time spent inside the embedding model
        return median([s[name]["wall_s"] - s[name]["embed_s"] for s in sized["steps"]])
    return median([s[name][key] for s in sized["steps"]])


def _size_figures(sized: dict, top: bool) -> list[Figure]:
    """Step wall time (with and without model time) and embeddings: langchain vs ours."""
    n, docs = len(sized["steps"]), sized["docs"]
    ours, lc = (_medians(sized, k, "wall_s") for k in ("ours (edge)", "langchain"))
    ours_o, lc_o = (_medians(sized, k, "overhead_s") for k in ("ours (edge)", "langchain"))
    ours_c = _medians(sized, "ours (qdrant-client local)", "wall_s")
    emb = {k: sum(s[k]["embedded"] for s in sized["steps"]) for k in SYSTEMS}
    never_more = all(s["ours (edge)"]["embedded"] <= s["langchain"]["embedded"]
                     for s in sized["steps"])
    target = f">= {TARGET_SPEEDUP:.0f}x" if top else None

    def ratio(a: str, b: str, key: str = "wall_s") -> float:  # step by step, then the median
        def value(step: dict, name: str) -> float:
            row = step[name]
            return row["wall_s"] - row["embed_s"] if key == "overhead_s" else row[key]
        return paired_ratio([value(s, a) for s in sized["steps"]],
                            [value(s, b) for s in sized["steps"]])

    speedup = ratio("langchain", "ours (edge)")
    return [
        Figure("langchain", f"{docs} docs: step wall, langchain / ours (edge)", round(lc, 3),
               "s", n, round(ours, 3), round(speedup, 2), target,
               speedup >= TARGET_SPEEDUP if top else None,
               f"langchain index() alone {_medians(sized, 'langchain', 'index_s'):.2f} s, "
               f"chunking {_medians(sized, 'langchain', 'chunk_s'):.2f} s; "
               f"{sized['chunks']} chunks"),
        Figure("langchain", f"{docs} docs: step minus model time, langchain / ours (edge)",
               round(lc_o, 3), "s", n, round(ours_o, 3),
               round(ratio("langchain", "ours (edge)", "overhead_s"), 2), None, None,
               "wall minus seconds inside the embedding model (what a GPU would shrink)"),
        Figure("langchain", f"{docs} docs: step wall, langchain / ours (qdrant-client local)",
               round(lc, 3), "s", n, round(ours_c, 3),
               round(ratio("langchain", "ours (qdrant-client local)"), 2), None, None,
               "same vector-store backend (qdrant-client local mode)"),
        Figure("langchain", f"{docs} docs: embeddings computed, ours / langchain",
               emb["ours (edge)"], "texts", n, emb["langchain"],
               round(emb["ours (edge)"] / max(emb["langchain"], 1), 3),
               "ours never more (each step)", never_more,
               f"summed over {n} steps; points deleted ours/langchain "
               f"{sum(s['ours (edge)']['deleted_points'] for s in sized['steps'])}/"
               f"{sum(s['langchain']['deleted_points'] for s in sized['steps'])}; "
               f"index == source: {sized['index_equals_source']}"),
    ]


def run(ctx: Context) -> dict:
    """Per corpus size: median step wall time and embeddings per system; speedup ratios."""
    from freshness.embed.embedding import load_model
    from freshness.embed.models import resolve_model
    from freshness.runtime import Runtime

    try:
        import langchain_classic  # noqa: F401
        import langchain_qdrant  # noqa: F401
    except ImportError:
        return {"figures": [], "details": {"skipped": "LangChain peers are not installed "
                                                      "(pip install -e '.[bench]')"}}
    corpus = ReplayCorpus(ctx.snapshot, ctx.replay, QUICK_SHARDS if ctx.quick else None)
    model = load_model(resolve_model(), ctx.device)
    chunker = Runtime(settings_for(ctx.scratch, ctx.device)).chunker
    pool = corpus.state(0).num_rows
    sizes = (125, 250, pool) if ctx.quick else (500, 1000, 2000, pool)
    changes = corpus.changes()
    details, figures = {}, []
    for size in sizes:
        sized = _size_run(ctx, corpus, changes, min(1.0, size / pool), model, chunker,
                          str(size))
        details[str(size)] = sized
        figures += _size_figures(sized, size == sizes[-1])
    scoped = scoped_full_check(ctx, corpus, model, chunker)
    details["scoped_full_check"] = scoped
    figures.append(Figure(
        "langchain", "scoped_full: deleted docs left in index",
        len(scoped["left_in_index"]["scoped_full"]), "docs", 1,
        len(scoped["left_in_index"]["full"]), None, None, None,
        "3 of 20 docs deleted from the source; baseline = cleanup='full'"))
    return {"figures": figures, "details": details}
