"""Run costs: GPU seconds of one re-embedding run, and how they are learned from past runs.

The re-embedding decision itself is `freshness.policy.control.decide` (docs/policy.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CostModel:
    """GPU seconds per run: overhead + per_chunk_s × chunks + listing_s per shard scanned;
    chunks_per_doc per changed doc."""

    overhead_s: float = 20.0
    per_chunk_s: float = 0.002
    chunks_per_doc: float = 1.2
    listing_s: float = 0.05

    @property
    def per_doc_s(self) -> float:
        return self.per_chunk_s * self.chunks_per_doc

    def run_s(self, scanned: float | np.ndarray, docs: float | np.ndarray) -> float | np.ndarray:
        """Seconds of one run that lists `scanned` shards and embeds `docs` changed docs."""
        return self.overhead_s + self.listing_s * scanned + self.per_doc_s * docs


def learn_costs(runs: Sequence[tuple[float, int]], default: CostModel = CostModel(),
                chunks_per_doc: float | None = None) -> CostModel:
    """Fit overhead + per-chunk seconds to past runs' (gpu_seconds, chunks_embedded).

    Least squares on runs with different chunk counts; falls back to the default overhead
    (and a per-chunk rate from the busiest run) when the runs cannot separate the two.
    """
    rows = [(float(s), int(c)) for s, c in runs if s is not None and s >= 0]
    cpd = chunks_per_doc or default.chunks_per_doc
    if len({c for _, c in rows}) >= 2:
        design = np.array([[1.0, c] for _, c in rows])
        (overhead, per_chunk), *_ = np.linalg.lstsq(design, np.array([s for s, _ in rows]),
                                                   rcond=None)
        if overhead >= 0 and per_chunk > 0:
            return CostModel(float(overhead), float(per_chunk), cpd, default.listing_s)
    busiest = max(rows, key=lambda r: r[1], default=None)
    if busiest and busiest[1] > 0:
        per_chunk = max((busiest[0] - default.overhead_s) / busiest[1], default.per_chunk_s)
        return CostModel(default.overhead_s, per_chunk, cpd, default.listing_s)
    return CostModel(default.overhead_s, default.per_chunk_s, cpd, default.listing_s)
