"""Re-embedding cadence under a GPU budget: the staleness-debt policy.

Model (derivation in docs/policy.md): changes to docs arrive as Poisson processes; a query
retrieves doc d with probability q_d (its retrieval share, from request logs or uniform); a run
of a shard costs `overhead_s` GPU seconds (launch + model load) plus `per_chunk_s` per chunk.
The objective is the share of retrievals served stale plus a price nu per GPU second. A
shard's *staleness debt* — sum over its pending docs of q_d × time since the doc changed — is
exactly the stale-retrieval mass it has accumulated; a run clears it for `overhead_s`. As in
the economic-order-quantity problem, the optimal rule is to run when the debt reaches
K = nu × overhead_s. `plan` finds the K whose expected spend meets the budget under the Poisson
model (per-shard SLAs and min/max intervals bound each shard's wait); `BudgetController`
corrects K from measured spend. The classic periodic allocation of Cho & Garcia-Molina (TODS
2003) it is checked against lives in `policy/reference.py`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from freshness.policy.refresh_math import delayed_cycle_arrays

MIN_DELAY_DAYS = 1 / 1440  # one minute
MAX_DELAY_DAYS = 365.0


@dataclass(frozen=True)
class ShardModel:
    """What the policy knows about a shard."""

    shard: str
    docs: int
    rate_per_doc_day: float
    query_weight: float = 1.0
    sla_days: float | None = None  # a change must be embedded within this
    min_interval_days: float = 0.0
    max_interval_days: float | None = None


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


@dataclass(frozen=True)
class ShardDecision:
    """Expected behaviour of a shard under the plan's debt threshold."""

    shard: str
    delay_days: float  # expected wait after the first pending change
    freshness: float
    runs_per_day: float
    gpu_seconds_per_day: float


@dataclass
class Plan:
    """The debt threshold that fits the budget, and what it is expected to achieve."""

    debt_threshold: float  # retrieval-share × days of staleness that justifies one run
    decisions: dict[str, ShardDecision]
    budget_gpu_seconds_per_day: float
    gpu_seconds_per_day: float
    weighted_freshness: float
    over_budget: bool = False
    notes: list[str] = field(default_factory=list)


def _bounds(shard: ShardModel) -> tuple[float, float]:
    low = max(MIN_DELAY_DAYS, shard.min_interval_days)
    high = min(x for x in (MAX_DELAY_DAYS, shard.sla_days, shard.max_interval_days) if x)
    return low, max(low, high)


class _Shards:
    """The shards of a plan as arrays, so thousands are evaluated at once."""

    def __init__(self, shards: Sequence[ShardModel], costs: CostModel) -> None:
        total = sum(s.query_weight for s in shards) or 1.0
        self.names = [s.shard for s in shards]
        self.docs = np.array([max(s.docs, 1) for s in shards], dtype=float)
        self.rate = np.array([s.rate_per_doc_day for s in shards], dtype=float)
        self.share = np.array([s.query_weight / total for s in shards], dtype=float)
        bounds = np.array([_bounds(s) for s in shards], dtype=float).reshape(-1, 2)
        self.low, self.high = bounds[:, 0], bounds[:, 1]
        self.costs = costs

    def debt(self, delay: np.ndarray) -> np.ndarray:
        """Expected staleness debt when each shard runs `delay` days after its first change."""
        _, stale_doc_days, _ = delayed_cycle_arrays(self.docs, self.rate, delay)
        return self.share / self.docs * stale_doc_days

    def delays(self, threshold: float) -> np.ndarray:
        """Per shard, the delay at which the expected debt reaches `threshold` (bisection)."""
        low, high = self.low.copy(), self.high.copy()
        settled = np.where(self.debt(high) <= threshold, high,
                           np.where(self.debt(low) >= threshold, low, np.nan))
        for _ in range(36):
            mid = np.sqrt(low * high)
            below = self.debt(mid) < threshold
            low, high = np.where(below, mid, low), np.where(below, high, mid)
        return np.where(np.isnan(settled), high, settled)

    def outcome(self, delay: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(runs per day, GPU seconds per day, freshness) of each shard at these delays."""
        cycle, stale, changed = delayed_cycle_arrays(self.docs, self.rate, delay)
        finite = np.isfinite(cycle)
        runs = np.where(finite, 1 / np.where(finite, cycle, 1), 0.0)
        gpu = runs * (self.costs.overhead_s + self.costs.per_doc_s * changed)
        fresh = np.where(finite, 1 - stale / (self.docs * np.where(finite, cycle, 1)), 1.0)
        return runs, gpu, fresh


def plan(shards: Sequence[ShardModel], costs: CostModel,
         budget_gpu_seconds_per_day: float) -> Plan:
    """The debt threshold whose expected GPU spend meets the budget (bisection), and the
    per-shard delays, freshness and spend it implies under the Poisson model."""
    model = _Shards(shards, costs)

    def spend(threshold: float) -> float:
        return float(model.outcome(model.delays(threshold))[1].sum())

    low, high = 1e-15, 1e3
    for _ in range(56):
        mid = math.sqrt(low * high)
        low, high = (mid, high) if spend(mid) > budget_gpu_seconds_per_day else (low, mid)
    delays = model.delays(high)
    runs, gpu, fresh = model.outcome(delays)
    decisions = {name: ShardDecision(name, float(d), float(f), float(r), float(g))
                 for name, d, f, r, g in zip(model.names, delays, fresh, runs, gpu)}
    spent = float(gpu.sum())
    result = Plan(high, decisions, budget_gpu_seconds_per_day, spent,
                  float((model.share * fresh).sum()),
                  over_budget=spent > budget_gpu_seconds_per_day * (1 + 1e-6))
    if result.over_budget:
        result.notes.append("SLAs or minimum cadence need more than the budget; SLAs were kept")
    return result


def staleness_debt(pending_since_days: Sequence[float], shares: Sequence[float],
                   now_days: float) -> float:
    """Retrieval-weighted stale time of a shard's pending docs: sum share × time waited."""
    return float(sum(w * max(0.0, now_days - t) for t, w in zip(pending_since_days, shares)))


def is_due(debt: float, threshold: float, pending_age_days: float | None,
           sla_days: float | None = None, days_since_last_run: float | None = None,
           min_interval_days: float = 0.0) -> bool:
    """Run a shard when its staleness debt reaches the threshold or its SLA is at risk."""
    if pending_age_days is None:
        return False
    if days_since_last_run is not None and days_since_last_run < min_interval_days:
        return False
    return debt >= threshold or (sla_days is not None and pending_age_days >= sla_days)


@dataclass
class BudgetController:
    """Keeps actual spend on budget: raises the threshold when over, lowers it when under."""

    threshold: float
    budget_gpu_seconds_per_day: float
    gain: float = 0.5

    def update(self, gpu_seconds: float, days: float) -> float:
        if days > 0 and self.budget_gpu_seconds_per_day > 0:
            ratio = gpu_seconds / days / self.budget_gpu_seconds_per_day
            self.threshold *= math.exp(self.gain * math.log(max(ratio, 1e-3)))
        return self.threshold
