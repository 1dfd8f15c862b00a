"""Freshness simulator: replay a change log against a re-embedding policy and a GPU budget.

Nothing is embedded: a run of a shard costs overhead + per-doc cost × docs pending (the cost
model). Retrieval-weighted freshness is exact for an infinite query stream: each doc is
retrieved at a rate proportional to its popularity (Zipf over a seeded random ranking by
default) while it exists in the source or the index, and a retrieval is stale while the doc's
latest source change is not embedded (edits, additions not yet indexed, deletions still served).
Every policy skips runs when nothing is pending (detection is cheap), so the comparison is
about when to spend GPU, not about wasting it on empty runs. `adaptive` is the staleness-debt
policy of `freshness.policy.planner`: its threshold comes from `plan` with causal rate and traffic
estimates (re-planned every 4 weeks); its parameter is the GPU budget it plans with.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from freshness.policy.planner import CostModel, ShardModel, plan
from freshness.util.rates import gamma_posterior_rate
from freshness.util.timeutil import DAY_S

POLICIES = ("adaptive", "uniform", "proportional", "threshold", "immediate")
RATE_WINDOW_DAYS = 90.0
REPLAN_DAYS = 28.0


@dataclass
class SimResult:
    policy: str
    parameter: float
    budget: float | None
    days: float
    runs: int
    gpu_seconds: float
    freshness: float
    mean_age_hours: float
    retrieval_weighted_freshness: float
    run_log: list[tuple[float, str]] = field(default_factory=list, repr=False)

    @property
    def gpu_seconds_per_day(self) -> float:
        return self.gpu_seconds / self.days

    def as_dict(self) -> dict:
        return {"policy": self.policy, "parameter": self.parameter, "budget": self.budget,
                "gpu_seconds": round(self.gpu_seconds, 1),
                "gpu_seconds_per_day": round(self.gpu_seconds_per_day, 3),
                "freshness": round(float(self.freshness), 5),
                "mean_age_hours": round(float(self.mean_age_hours), 3),
                "retrieval_weighted_freshness": round(float(self.retrieval_weighted_freshness), 5),
                "runs": self.runs, "days": round(self.days, 2)}


@dataclass
class ChangeLog:
    """Changes as arrays in time order (seconds since start), plus doc popularity."""

    times: np.ndarray
    docs: np.ndarray  # doc index
    shards: np.ndarray  # shard index
    deletes: np.ndarray  # bool
    initial_docs: np.ndarray  # doc indices alive at time 0
    shard_names: list[str]
    doc_shard: np.ndarray
    popularity: np.ndarray
    horizon: float

    @classmethod
    def from_parquet(cls, snapshot: str, replay: str, **kwargs) -> ChangeLog:
        """Read a snapshot.parquet / replay.parquet pair (tldr-replay schema)."""
        import pyarrow.parquet as pq

        return cls.from_tables(
            pq.read_table(snapshot, columns=["path", "shard", "committed_at"]),
            pq.read_table(replay, columns=["committed_at", "path", "shard", "op"]), **kwargs)

    @classmethod
    def from_tables(cls, snapshot: pa.Table, changes: pa.Table, zipf_s: float = 1.0,
                    seed: int = 0, popularity: dict[str, float] | None = None) -> ChangeLog:
        """From the replay schema: snapshot (path, shard) and changes (committed_at, path,
        shard, op) in replay order."""
        start = min(c.timestamp() for c in changes["committed_at"].to_pylist()[:1]
                    + snapshot["committed_at"].to_pylist()[:1])
        paths = list(dict.fromkeys(snapshot["path"].to_pylist() + changes["path"].to_pylist()))
        index = {p: i for i, p in enumerate(paths)}
        shard_of = dict(zip(snapshot["path"].to_pylist(), snapshot["shard"].to_pylist()))
        shard_of.update(zip(changes["path"].to_pylist(), changes["shard"].to_pylist()))
        names = sorted(set(shard_of.values()))
        shard_index = {s: i for i, s in enumerate(names)}
        rng = np.random.default_rng(seed)
        if popularity is None:
            ranks = rng.permutation(len(paths)) + 1
            weights = 1.0 / ranks.astype(float) ** zipf_s
        else:
            weights = np.array([popularity.get(p, 0.0) for p in paths], dtype=float)
        times = np.array([t.timestamp() - start for t in changes["committed_at"].to_pylist()])
        return cls(
            times=times,
            docs=np.array([index[p] for p in changes["path"].to_pylist()]),
            shards=np.array([shard_index[s] for s in changes["shard"].to_pylist()]),
            deletes=np.array([op == "delete" for op in changes["op"].to_pylist()]),
            initial_docs=np.array([index[p] for p in snapshot["path"].to_pylist()]),
            shard_names=names,
            doc_shard=np.array([shard_index[shard_of[p]] for p in paths]),
            popularity=weights / weights.sum(),
            horizon=float(times.max()) if len(times) else 0.0,
        )


class _State:
    """Per-doc existence and staleness, with the integrals the metrics need."""

    def __init__(self, log: ChangeLog) -> None:
        n = len(log.doc_shard)
        self.log = log
        self.alive_since = np.full(n, np.nan)  # in source or index since
        self.alive_since[log.initial_docs] = 0.0
        self.in_source = np.zeros(n, bool)
        self.in_source[log.initial_docs] = True
        self.stale_since = np.full(n, np.nan)
        self.pending: list[set[int]] = [set() for _ in log.shard_names]
        self.first_pending = [math.inf] * len(log.shard_names)
        # Retrieval-weighted staleness debt of a shard at time t is t·mass − weighted_since.
        self.mass = np.zeros(len(log.shard_names))
        self.debt_weight = log.popularity  # replaced by shard averages when the policy
        # only knows per-shard traffic (see `simulate(doc_traffic=False)`)
        self.weighted_since = np.zeros(len(log.shard_names))
        self.doc_time = self.stale_time = self.age_integral = 0.0
        self.w_doc_time = self.w_stale_time = 0.0

    def change(self, t: float, doc: int, shard: int, delete: bool) -> None:
        if math.isnan(self.alive_since[doc]):
            self.alive_since[doc] = t
        self.in_source[doc] = not delete
        if math.isnan(self.stale_since[doc]):
            self.stale_since[doc] = t
            weight = self.debt_weight[doc]
            self.mass[shard] += weight
            self.weighted_since[shard] += weight * t
        self.pending[shard].add(doc)
        self.first_pending[shard] = min(self.first_pending[shard], t)

    def run(self, t: float, shard: int) -> int:
        docs = self.pending[shard]
        p = self.log.popularity
        for doc in docs:
            waited = t - self.stale_since[doc]
            self.stale_time += waited
            self.age_integral += waited * waited / 2
            self.w_stale_time += p[doc] * waited
            self.stale_since[doc] = np.nan
            if not self.in_source[doc]:  # deletion now propagated: the doc leaves the index
                self._close(doc, t)
        count = len(docs)
        self.pending[shard] = set()
        self.first_pending[shard] = math.inf
        self.mass[shard] = self.weighted_since[shard] = 0.0
        return count

    def _close(self, doc: int, t: float) -> None:
        lived = t - self.alive_since[doc]
        self.doc_time += lived
        self.w_doc_time += self.log.popularity[doc] * lived
        self.alive_since[doc] = np.nan

    def finish(self, t: float) -> None:
        for shard in range(len(self.pending)):
            for doc in self.pending[shard]:
                waited = t - self.stale_since[doc]
                self.stale_time += waited
                self.age_integral += waited * waited / 2
                self.w_stale_time += self.log.popularity[doc] * waited
        for doc in np.flatnonzero(~np.isnan(self.alive_since)):
            self._close(int(doc), t)


class _Rates:
    """Causal per-shard change-rate estimates (last RATE_WINDOW_DAYS of observed changes)."""

    def __init__(self, shards: int) -> None:
        self.times: list[list[float]] = [[] for _ in range(shards)]

    def observe(self, t: float, shard: int) -> None:
        self.times[shard].append(t)

    def per_doc_day(self, t: float, shard: int, docs: int) -> float:
        window = max(min(RATE_WINDOW_DAYS * DAY_S, t), DAY_S)
        recent = sum(1 for x in self.times[shard] if x > t - window)
        return gamma_posterior_rate(recent, max(docs, 1) * window / DAY_S)


def _shard_views(state: _State, rates: _Rates, t: float) -> tuple[np.ndarray, np.ndarray]:
    log = state.log
    alive = ~np.isnan(state.alive_since)
    counts = np.bincount(log.doc_shard[alive], minlength=len(log.shard_names))
    weights = np.bincount(log.doc_shard[alive], weights=log.popularity[alive],
                          minlength=len(log.shard_names))
    per_doc = np.array([rates.per_doc_day(t, s, int(counts[s]))
                        for s in range(len(log.shard_names))])
    return counts, np.stack([per_doc, weights])


def simulate(log: ChangeLog, policy: str, parameter: float, costs: CostModel,
             budget: float | None = None, doc_traffic: bool = False) -> SimResult:
    """Run one policy over the whole log. `parameter`: uniform/proportional → interval days
    (proportional: days × mean shard rate / shard rate), threshold → pending docs,
    adaptive → the GPU seconds per day it plans with; immediate ignores it. With
    `doc_traffic` the adaptive policy weighs each pending doc by its own retrieval share (as
    request logs allow); by default it knows per-shard traffic only (share / docs per doc)."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}: use one of {', '.join(POLICIES)}")
    state, rates = _State(log), _Rates(len(log.shard_names))
    if not doc_traffic:
        share = np.bincount(log.doc_shard, weights=log.popularity)
        count = np.bincount(log.doc_shard).astype(float)
        state.debt_weight = (share / np.maximum(count, 1))[log.doc_shard]
    heap: list[tuple[float, int, int, int]] = []  # (time, order, shard, token)
    tokens = [0] * len(log.shard_names)
    gpu, runs, run_log = 0.0, 0, []
    threshold = [math.inf]  # adaptive: the staleness-debt threshold, in share × seconds
    intervals = np.full(len(log.shard_names), parameter * DAY_S)
    next_plan = 0.0

    def schedule(t: float, shard: int) -> None:
        tokens[shard] += 1
        heapq.heappush(heap, (t, 1, shard, tokens[shard]))

    def schedule_debt(t: float, shard: int) -> None:
        """When the shard's staleness debt (t·mass − weighted_since) reaches the threshold."""
        due = (threshold[0] + state.weighted_since[shard]) / state.mass[shard]
        schedule(max(t, due), shard)

    def replan(t: float) -> None:
        counts, (per_doc, weights) = _shard_views(state, rates, t)
        if policy == "adaptive":
            models = [ShardModel(n, int(counts[i]), float(per_doc[i]), float(weights[i]))
                      for i, n in enumerate(log.shard_names)]
            threshold[0] = plan(models, costs, parameter).debt_threshold * DAY_S
            for s, first in enumerate(state.first_pending):
                if math.isfinite(first):
                    schedule_debt(t, s)
        elif policy == "proportional":
            shard_rates = per_doc * np.maximum(counts, 1)
            mean = shard_rates.mean()
            intervals[:] = parameter * DAY_S * mean / np.maximum(shard_rates, 1e-9)

    def periodic_ticks(until: float) -> None:
        for s in range(len(log.shard_names)):
            while next_tick[s] <= until:
                heapq.heappush(heap, (next_tick[s], 1, s, -1))
                next_tick[s] += intervals[s]

    replan(0.0)
    next_tick = intervals.copy() if policy in ("uniform", "proportional") else None
    for t, doc, shard, delete in zip(log.times, log.docs, log.shards, log.deletes):
        gpu, runs = _drain(state, heap, tokens, t, costs, gpu, runs, run_log)
        if t >= next_plan:
            replan(t)
            next_plan = t + REPLAN_DAYS * DAY_S
        if next_tick is not None:
            periodic_ticks(t)
            gpu, runs = _drain(state, heap, tokens, t, costs, gpu, runs, run_log)
        state.change(t, int(doc), int(shard), bool(delete))
        rates.observe(t, int(shard))
        if policy == "immediate" or (policy == "threshold"
                                     and len(state.pending[shard]) >= parameter):
            schedule(t, int(shard))
        elif policy == "adaptive":
            schedule_debt(t, int(shard))
    end = log.horizon
    if next_tick is not None:
        periodic_ticks(end)
    gpu, runs = _drain(state, heap, tokens, end, costs, gpu, runs, run_log, inclusive=True)
    state.finish(end)
    days = end / DAY_S
    return SimResult(
        policy, parameter, budget, days, runs, gpu,
        freshness=1 - state.stale_time / state.doc_time,
        mean_age_hours=state.age_integral / state.doc_time / 3600,
        retrieval_weighted_freshness=1 - state.w_stale_time / state.w_doc_time,
        run_log=run_log,
    )


def _drain(state: _State, heap: list, tokens: list[int], until: float, costs: CostModel,
           gpu: float, runs: int, run_log: list, inclusive: bool = False) -> tuple[float, int]:
    """Execute scheduled runs before `until` (changes at `until` go first)."""
    while heap and (heap[0][0] < until or (inclusive and heap[0][0] <= until)):
        t, _, shard, token = heapq.heappop(heap)
        if token >= 0 and token != tokens[shard]:
            continue  # superseded schedule
        if not state.pending[shard]:
            continue  # nothing to embed: skip the run
        docs = state.run(t, shard)
        gpu += costs.overhead_s + costs.per_doc_s * docs
        runs += 1
        run_log.append((t, state.log.shard_names[shard]))
    return gpu, runs


def calibrate(log: ChangeLog, policy: str, budget: float, costs: CostModel,
              iterations: int = 18, doc_traffic: bool = False) -> SimResult:
    """The policy's parameter that spends as much of `budget` (GPU s/day) as it can, not more."""
    if policy == "immediate":
        return simulate(log, policy, 0.0, costs, budget)
    if policy == "adaptive":  # spend grows with the planned budget
        low, high, grows = budget / 8, budget * 8, True
    elif policy == "threshold":
        low, high, grows = 1.0, 5000.0, False
    else:  # interval days: spend falls as the interval grows
        low, high, grows = 1e-3, 2000.0, False
    best: SimResult | None = None
    for _ in range(iterations):
        mid = math.sqrt(low * high)
        if policy == "threshold":
            mid = float(max(1, round(mid)))
        result = simulate(log, policy, mid, costs, budget, doc_traffic)
        fits = result.gpu_seconds_per_day <= budget
        if fits and (best is None or result.retrieval_weighted_freshness
                     > best.retrieval_weighted_freshness):
            best = result
        if fits == grows:
            low = mid
        else:
            high = mid
        if policy == "threshold" and high - low <= 1:
            break
    if best is None:  # even the thriftiest setting overspends: report it, marked
        best = simulate(log, policy, high if grows else low, costs, budget, doc_traffic)
    return best


def compare(log: ChangeLog, budgets: list[float], costs: CostModel,
            policies: tuple[str, ...] = POLICIES, doc_traffic: bool = False) -> list[dict]:
    """Every policy at every budget, each calibrated to spend no more than the budget."""
    rows = []
    for budget in budgets:
        for policy in policies:
            if policy == "immediate":
                continue
            rows.append(calibrate(log, policy, budget, costs,
                                  doc_traffic=doc_traffic).as_dict())
    if "immediate" in policies:
        rows.append(simulate(log, "immediate", 0.0, costs).as_dict())
    return rows
