"""Retrieval shares per doc and per shard: the one module that reads and writes the traffic file.

Bounded in size: the `top_k` most retrieved docs keep their own share; every other doc of a shard
gets an equal part of its shard's remainder. Learned over a window: each recency report keeps its
days' per-doc retrieval counts (a later report of a day replaces them), and the shares come from
the last WINDOW_DAYS days, each weighed down by half every HALF_LIFE_DAYS before the newest — so a
report of a quarter of an hour does not decide alone, and traffic that moves is followed within
days. Written by the recency computation (asset and CLI), read by the re-embedding policy (per-doc
weights of its staleness rate) and by the alerts (per-shard weights); the simulator learns shares
from a sampled query stream through the same functions (`day_weights`, `doc_shares`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from freshness.state import layout
from freshness.state.store import StateStore

TOP_K = 2000
PATH = layout.TRAFFIC_FILE
DAYS_DIR = layout.TRAFFIC_DAYS_DIR
HALF_LIFE_DAYS = 7.0  # a day's retrievals weigh half as much a week later ...
WINDOW_DAYS = 28  # ... and nothing after four weeks


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


def top_docs(counts: np.ndarray, top_k: int = TOP_K, rank: np.ndarray | None = None
             ) -> np.ndarray:
    """Indices of the docs that keep their own share: the `top_k` most retrieved, none that
    nobody retrieved; ties go to the lower `rank` (default: the position; the files' rows are
    in (shard, doc_id) order)."""
    counts = np.asarray(counts, float)
    rank = np.arange(len(counts)) if rank is None else np.asarray(rank)
    keep = np.arange(len(counts))
    if 0 < top_k < len(counts):  # only docs at least as retrieved as the top_k-th can be in
        keep = np.flatnonzero(counts >= np.partition(counts, len(counts) - top_k)[-top_k])
    order = keep[np.lexsort((rank[keep], -counts[keep]))][:top_k]
    return order[counts[order] > 0]


def doc_shares(counts: np.ndarray, doc_shard: np.ndarray, shard_docs: np.ndarray,
               top_k: int = TOP_K, rank: np.ndarray | None = None) -> np.ndarray:
    """Per-doc shares as `bounded(...).doc_weights(...)` gives them, for arrays: the top docs
    their own share of `counts`, every other doc of a shard an equal part of the shard's
    remainder over its `shard_docs` (docs the shard holds now) less its top docs. `rank`: each
    doc's place in (shard, doc_id) order, which breaks ties as the files do."""
    counts = np.asarray(counts, float)
    shares = counts / (counts.sum() or 1.0)
    shards = len(shard_docs)
    top = np.zeros(len(counts), bool)
    top[top_docs(counts, top_k, rank)] = True
    rest = np.bincount(doc_shard[~top], weights=shares[~top], minlength=shards)
    others = np.maximum(shard_docs - np.bincount(doc_shard[top], minlength=shards), 1)
    return np.where(top, shares, (rest / others)[doc_shard])


def bounded(doc_retrievals: pa.Table, top_k: int = TOP_K) -> Traffic:
    """Traffic from per-doc retrieval counts (columns shard, doc_id, retrievals; a doc may
    appear on several rows: its counts add up)."""
    if doc_retrievals.num_rows:
        summed = doc_retrievals.group_by(["shard", "doc_id"], use_threads=False) \
            .aggregate([("retrievals", "sum")])
        doc_retrievals = pa.table({"shard": summed["shard"], "doc_id": summed["doc_id"],
                                   "retrievals": summed["retrievals_sum"]}) \
            .sort_by([("shard", "ascending"), ("doc_id", "ascending")])
    shards_col = doc_retrievals["shard"].to_pylist()
    docs_col = doc_retrievals["doc_id"].to_pylist()
    counts = np.asarray(doc_retrievals["retrievals"].to_pylist(), dtype=float)
    total = counts.sum() or 1.0
    shards: dict[str, float] = {}
    for shard, n in zip(shards_col, counts):
        shards[shard] = shards.get(shard, 0.0) + n / total
    top: dict[str, dict[str, float]] = {}
    for i in top_docs(counts, top_k):
        top.setdefault(shards_col[i], {})[docs_col[i]] = counts[i] / total
    return Traffic(shards, top, float(counts.sum()))


def day_weights(age_days: np.ndarray | float) -> np.ndarray:
    """What a day's retrievals weigh `age_days` days before the newest day recorded."""
    age = np.asarray(age_days, float)
    return np.where((age >= 0) & (age < WINDOW_DAYS), 0.5 ** (age / HALF_LIFE_DAYS), 0.0)


def record_days(store: StateStore, counts: pa.Table, top_k: int = TOP_K) -> Traffic:
    """Keep a report's per-doc retrieval counts per day (columns day, shard, doc_id,
    retrievals; a day already kept is replaced: a later report of a day saw more of it), drop
    the days out of the window, and write the traffic file learned from the days kept."""
    days = sorted({d.isoformat() for d in counts["day"].to_pylist()})
    for day in days:
        rows = counts.filter(pc.equal(counts["day"], pa.scalar(date.fromisoformat(day))))
        store.write_table(rows.select(["shard", "doc_id", "retrievals"]), *DAYS_DIR,
                          f"{day}.parquet")
    kept = sorted(n.removesuffix(".parquet") for n in store.list_dir(*DAYS_DIR)
                  if n.endswith(".parquet"))
    newest = date.fromisoformat(kept[-1]) if kept else None
    tables = []
    for day in kept:
        weight = float(day_weights((newest - date.fromisoformat(day)).days))
        if weight == 0:
            store.delete(*DAYS_DIR, f"{day}.parquet")
            continue
        table = store.read_table(*DAYS_DIR, f"{day}.parquet")
        tables.append(table.set_column(2, "retrievals", pc.multiply(
            table["retrievals"].cast(pa.float64()), weight)))
    traffic = bounded(pa.concat_tables(tables) if tables else pa.table(
        {"shard": [], "doc_id": [], "retrievals": []}), top_k)
    write_traffic(store, traffic)
    return traffic


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
