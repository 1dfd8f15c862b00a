"""The peer for the LangChain comparison: `langchain_core.indexing.index()` with a SQLite
`SQLRecordManager` into `QdrantVectorStore` on a qdrant-client local-mode client, and the very
same SentenceTransformer wrapped as a LangChain `Embeddings` that counts what it embeds.

Also: the tldr change log as a corpus at any commit, restricted to a stable pseudo-random subset
of paths (so corpora of 500, 1 k, 2 k, 4 k docs are nested), and helpers that read back what an
index holds as (doc id, chunk text) pairs, to check it equals the source.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from benchmarks.common import VectorMemo, path_fraction

COLLECTION = "lc"


class ReplayCorpus:
    """The docs of a change log as of a commit: `state(seq)` → doc_id, shard, content,
    updated_at, for the pool shards and paths with `path_fraction(path) < fraction`."""

    def __init__(self, snapshot: Path, replay: Path, shards: Iterable[str] | None) -> None:
        self.con = duckdb.connect()
        self.con.sql(f"""CREATE TABLE log AS SELECT commit_seq, committed_at, path, shard, op,
            content FROM read_parquet(['{snapshot}', '{replay}'])""")
        self.shards = sorted(shards) if shards else [r[0] for r in self.con.sql(
            "SELECT DISTINCT shard FROM log WHERE commit_seq = 0 ORDER BY 1").fetchall()]

    def changes(self) -> list[dict]:
        return self.con.sql("SELECT commit_seq, path, shard, op FROM log WHERE commit_seq > 0 "
                            "ORDER BY commit_seq, path").to_arrow_table().to_pylist()

    def state(self, seq: int, fraction: float = 1.0) -> pa.Table:
        shards = ", ".join(f"'{s}'" for s in self.shards)
        table = self.con.sql(f"""SELECT path AS doc_id, shard, content,
                committed_at AS updated_at FROM log
            WHERE commit_seq <= {int(seq)} AND shard IN ({shards})
            QUALIFY row_number() OVER (PARTITION BY path ORDER BY commit_seq DESC) = 1
                AND op <> 'delete' ORDER BY path""").to_arrow_table()
        keep = [path_fraction(p) < fraction for p in table["doc_id"].to_pylist()]
        return table.filter(pa.array(keep, pa.bool_()))

    def member(self, fraction: float):
        pool = set(self.shards)
        return lambda row: row["shard"] in pool and path_fraction(row["path"]) < fraction


def counting_embeddings(model, memo: VectorMemo, batch_size: int = 64):
    """The SentenceTransformer as a LangChain `Embeddings`; counts texts while `use_memo` is off
    (timed steps) and reads `memo` while it is on (un-timed initial build)."""
    from langchain_core.embeddings import Embeddings

    def raw(texts: list[str]) -> np.ndarray:
        return model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=False)

    class CountingEmbeddings(Embeddings):
        use_memo = True
        texts = 0
        calls = 0
        seconds = 0.0

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            if self.use_memo:
                return memo.encode(texts, raw).tolist()
            self.calls += 1
            self.texts += len(texts)
            started = time.perf_counter()
            vectors = raw(texts)
            self.seconds += time.perf_counter() - started
            memo.put(texts, vectors)
            return vectors.tolist()

        def embed_query(self, text: str) -> list[float]:
            return self.embed_documents([text])[0]

    return CountingEmbeddings()


class LangChainIndex:
    """index() + SQLRecordManager (SQLite file) + QdrantVectorStore (local mode)."""

    def __init__(self, root: Path, embeddings, chunker, in_memory: bool = False) -> None:
        from langchain_classic.indexes import SQLRecordManager
        from langchain_qdrant import QdrantVectorStore
        from qdrant_client import QdrantClient, models

        root.mkdir(parents=True, exist_ok=True)
        self.client = QdrantClient(location=":memory:") if in_memory else \
            QdrantClient(path=str(root / "qdrant"))
        self.client.create_collection(COLLECTION, vectors_config=models.VectorParams(
            size=384, distance=models.Distance.COSINE))
        self.store = QdrantVectorStore(client=self.client, collection_name=COLLECTION,
                                       embedding=embeddings)
        self.records = SQLRecordManager("bench", db_url=f"sqlite:///{root / 'records.sqlite'}")
        self.records.create_schema()
        self.chunker = chunker

    def documents(self, docs: pa.Table) -> list:
        """Our chunks of every doc as LangChain Documents with `source_id` metadata."""
        from langchain_core.documents import Document

        chunks = self.chunker.chunk_docs(docs)
        return [Document(page_content=t, metadata={"source_id": d}) for d, t in
                zip(chunks["doc_id"].to_pylist(), chunks["text"].to_pylist())]

    def index(self, documents: list, cleanup: str = "full") -> dict:
        from langchain_core.indexing import index

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sha1 key encoder (LangChain's default) warns
            return index(documents, self.records, self.store, cleanup=cleanup,
                         source_id_key="source_id")

    def pairs(self) -> set[tuple[str, str]]:
        """(source_id, text) of every point in the collection."""
        out, offset = set(), None
        while True:
            points, offset = self.client.scroll(COLLECTION, limit=10_000, offset=offset,
                                                with_payload=True, with_vectors=False)
            out.update((p.payload["metadata"]["source_id"], p.payload["page_content"])
                       for p in points)
            if offset is None:
                return out

    def close(self) -> None:
        self.client.close()


def ours_pairs(rt) -> set[tuple[str, str]]:
    """(doc_id, text) of every point our index holds for the runtime's collection."""
    out = set()
    for shard in rt.shard_state().shards():
        ids = rt.index.shard_point_ids(rt.collection, shard)
        with rt.index.open_shard(rt.collection, shard) as session:
            payloads = session.retrieve(sorted(ids))
        out.update((p["doc_id"], p["text"]) for p in payloads.values())
    return out


def expected_pairs(chunker, docs: pa.Table) -> set[tuple[str, str]]:
    chunks = chunker.chunk_docs(docs)
    return set(zip(chunks["doc_id"].to_pylist(), chunks["text"].to_pylist()))


def without(docs: pa.Table, doc_ids: Iterable[str]) -> pa.Table:
    return docs.filter(pc.invert(pc.is_in(docs["doc_id"], pa.array(list(doc_ids), pa.string()))))
