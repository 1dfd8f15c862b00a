"""Retrieval shares per doc and per shard: the one module that reads and writes the traffic file.

Bounded in size: the `top_k` most retrieved docs keep their own share; every other doc of a shard
gets an equal part of its shard's remainder. Written by the recency computation (asset and CLI),
read by the re-embedding policy (per-doc weights of its staleness rate) and by the alerts
(per-shard weights).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from freshness.state import layout
from freshness.state.store import StateStore

TOP_K = 2000
PATH = layout.TRAFFIC_FILE


@dataclass
class Traffic:
    """Per-shard shares, plus the top docs' own shares (a shard's other docs share the rest)."""

    shards: dict[str, float]
    top_docs: dict[str, dict[str, float]] = field(default_factory=dict)  # shard -> doc -> share
    retrievals: float | None = None  # how many retrievals the shares come from (None: exact)

    def doc_weights(self, shard: str, doc_ids: Sequence[str], shard_docs: int) -> np.ndarray:
        """Retrieval share of each given doc of `shard` (which holds `shard_docs` docs now)."""
        top = self.top_docs.get(shard, {})
        rest_share = max(self.shards.get(shard, 0.0) - sum(top.values()), 0.0)
        rest = rest_share / max(shard_docs - len(top), 1)
        return np.array([top.get(d, rest) for d in doc_ids], dtype=float)

    def as_dict(self) -> dict:
        return {"version": 2, "shards": self.shards, "top_docs": self.top_docs,
                **({"retrievals": self.retrievals} if self.retrievals is not None else {})}


def bounded(doc_retrievals: pa.Table, top_k: int = TOP_K) -> Traffic:
    """Traffic from per-doc retrieval counts (columns shard, doc_id, retrievals)."""
    shards_col = doc_retrievals["shard"].to_pylist()
    docs_col = doc_retrievals["doc_id"].to_pylist()
    counts = np.asarray(doc_retrievals["retrievals"].to_pylist(), dtype=float)
    total = counts.sum() or 1.0
    shards: dict[str, float] = {}
    for shard, n in zip(shards_col, counts):
        shards[shard] = shards.get(shard, 0.0) + n / total
    top: dict[str, dict[str, float]] = {}
    for i in np.argsort(-counts, kind="stable")[:top_k]:
        if counts[i] > 0:
            top.setdefault(shards_col[i], {})[docs_col[i]] = counts[i] / total
    return Traffic(shards, top, float(counts.sum()))


def write_traffic(store: StateStore, traffic: Traffic) -> None:
    store.write_json(traffic.as_dict(), *PATH)


def read_traffic(store: StateStore) -> Traffic | None:
    """The stored traffic (a per-shard-only file from older versions is read too)."""
    raw = store.read_json(*PATH)
    if not raw:
        return None
    if raw.get("version") == 2:
        return Traffic(dict(raw.get("shards", {})), dict(raw.get("top_docs", {})),
                       raw.get("retrievals"))
    return Traffic({k: float(v) for k, v in raw.items()})


def traffic_shares(store: StateStore) -> dict[str, float] | None:
    """Per-shard retrieval shares, if the recency computation wrote any."""
    traffic = read_traffic(store)
    return traffic.shards if traffic else None
