"""Retrieval shares as a deployment learns them: from a sampled query stream, day by day.

The simulator's evaluator scores every schedule against the log's popularity (an unbounded query
stream). A deployment does not know that popularity: recency counts each day's retrievals per
doc, and the policy weighs pending docs by shares learned over the last weeks
(`freshness.state.traffic`: days weighed by age, the top docs' own shares and per-shard
remainders, a uniform prior worth PRIOR_RETRIEVALS retrievals). `LearnedShares` draws each day's
retrievals (Poisson, `retrievals_per_day` in all, spread by popularity over the docs the index
holds: a doc not embedded yet is in no request log) and turns them into shares with the same
functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from freshness.policy.replay import ChangeLog
from freshness.state.traffic import TOP_K, WINDOW_DAYS, day_weights, doc_shares


@dataclass
class LearnedShares:
    """The traffic file as a deployment would hold it after each day of a seeded query
    stream (none before the first day ends)."""

    log: ChangeLog
    retrievals_per_day: float
    seed: int = 0
    top_k: int = TOP_K
    day: int = 0  # days sampled so far (the shares cover [0, day))
    counts: list[np.ndarray] = field(default_factory=list, repr=False)  # the kept days, newest last
    q: np.ndarray = field(init=False, repr=False)  # per doc (0 before any day)
    shard_share: np.ndarray = field(init=False, repr=False)  # per shard
    retrievals: float = 0.0  # the weighed retrievals the shares come from

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        self._rank = self.log.doc_rank()
        self.q = np.zeros(len(self.log.popularity))
        self.shard_share = np.zeros(len(self.log.shard_names))

    def advance(self, day: int, indexed: np.ndarray, listed: np.ndarray) -> bool:
        """Sample the days up to `day` (exclusive) over the docs `indexed` now (the source
        `listed` the docs that share a shard's remainder); True when the shares moved."""
        if day <= self.day:
            return False
        popularity = np.where(indexed, self.log.popularity, 0.0)
        total = popularity.sum()
        for _ in range(min(day - self.day, WINDOW_DAYS)):
            mean = self.retrievals_per_day * popularity / total if total > 0 else popularity
            self.counts.append(self._rng.poisson(mean).astype(float))
        self.counts = self.counts[-WINDOW_DAYS:]
        self.day = day
        weights = day_weights(np.arange(len(self.counts))[::-1])
        weighed = np.tensordot(weights, np.array(self.counts), axes=1)
        shards = len(self.log.shard_names)
        shard_docs = np.bincount(self.log.doc_shard[listed], minlength=shards)
        self.q = doc_shares(weighed, self.log.doc_shard, shard_docs, self.top_k, self._rank)
        self.retrievals = float(weighed.sum())
        self.shard_share = np.bincount(self.log.doc_shard, weights=weighed, minlength=shards) / \
            (self.retrievals or 1.0)
        return True

    def known(self) -> np.ndarray:
        """Per shard: the traffic file has it (someone retrieved one of its docs in the window);
        a poll records its share then, else the plan fills in the share it has at plan time."""
        return self.shard_share > 0
