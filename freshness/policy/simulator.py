"""Freshness simulator: replay a change log through a re-embedding policy under a GPU budget.

Nothing is embedded. The production cost model: a run pays the overhead once, a listing per shard
in its partition range and a per-chunk cost per pending doc; every pending shard rides along
(one batched run), and a run with nothing pending is skipped. Retrieval-weighted freshness is exact
for an infinite query stream: each doc is retrieved at a rate proportional to its popularity (Zipf
over a seeded random ranking by default) while it exists in the source or the index, and a
retrieval is stale while the doc's latest change is not embedded (edits, additions not indexed
yet, deletions still served).

Policies produce run schedules, and one vectorised `evaluate` scores every schedule:
- `adaptive` is the production loop: `freshness.policy.control.decide` called after every change
  (and when it asks to be woken), with causal inputs only — the budget as given, arrivals seen so
  far, and per-doc traffic in the bounded form recency writes (`freshness.state.traffic`);
- `uniform` (one batched run every T), `proportional` (each shard's clock ∝ its change rate, the
  run batched), `threshold` (a batched run when N docs are pending) — each calibrated with
  hindsight to spend as much of the budget as it can;
- `oracle`: clairvoyant (knows every future change and query), the best batched schedule for its
  spend (dynamic programming over change instants with a Lagrange multiplier on the budget);
- `immediate`: a run after every change (the ceiling).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from freshness.policy.control import LoopConfig, LoopInputs, LoopPlan, decide, plan_threshold
from freshness.policy.planner import CostModel
from freshness.state.traffic import TOP_K
from freshness.util.timeutil import DAY_S

POLICIES = ("adaptive", "adaptive-fixed", "uniform", "proportional", "threshold", "oracle",
            "immediate")
BASELINES = ("uniform", "proportional", "threshold")
REPLAN_DAYS = 7.0


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
    run_times: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    run_shards: list[np.ndarray] = field(default_factory=list, repr=False)
    lower_bound_stale: float | None = None  # oracle only: Lagrangian bound at the budget

    @property
    def gpu_seconds_per_day(self) -> float:
        return self.gpu_seconds / self.days

    @property
    def stale_share(self) -> float:
        """Share of retrievals served stale (1 − retrieval-weighted freshness)."""
        return 1.0 - self.retrieval_weighted_freshness

    def as_dict(self) -> dict:
        return {"policy": self.policy, "parameter": round(float(self.parameter), 6),
                "budget": self.budget, "gpu_seconds": round(self.gpu_seconds, 1),
                "gpu_seconds_per_day": round(self.gpu_seconds_per_day, 4),
                "freshness": round(float(self.freshness), 5),
                "mean_age_hours": round(float(self.mean_age_hours), 3),
                "retrieval_weighted_freshness": round(float(self.retrieval_weighted_freshness), 6),
                "stale_share": round(float(self.stale_share), 6),
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
    doc_ids: list[str] = field(default_factory=list)

    @classmethod
    def from_parquet(cls, snapshot: str, replay: str, **kwargs) -> ChangeLog:
        """Read a snapshot.parquet / replay.parquet pair (tldr-replay schema)."""
        import pyarrow.parquet as pq

        return cls.from_tables(
            pq.read_table(snapshot, columns=["path", "shard", "committed_at"]),
            pq.read_table(replay, columns=["committed_at", "path", "shard", "op"]), **kwargs)

    @classmethod
    def from_tables(cls, snapshot: pa.Table, changes: pa.Table, zipf_s: float = 1.0,
                    seed: int = 0, popularity: dict[str, float] | None = None,
                    start: float | None = None) -> ChangeLog:
        """From the replay schema: snapshot (path, shard) and changes (committed_at, path,
        shard, op) in replay order. `start`: the epoch second of time 0 (default: the first
        commit)."""
        if start is None:
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
            docs=np.array([index[p] for p in changes["path"].to_pylist()], dtype=np.int64),
            shards=np.array([shard_index[s] for s in changes["shard"].to_pylist()],
                            dtype=np.int64),
            deletes=np.array([op == "delete" for op in changes["op"].to_pylist()], dtype=bool),
            initial_docs=np.array([index[p] for p in snapshot["path"].to_pylist()],
                                  dtype=np.int64),
            shard_names=names,
            doc_shard=np.array([shard_index[shard_of[p]] for p in paths], dtype=np.int64),
            popularity=weights / weights.sum(),
            horizon=float(times.max()) if len(times) else 0.0,
            doc_ids=paths,
        )

    def events(self) -> tuple[np.ndarray, np.ndarray]:
        """Distinct change times and, per time, the offset of its first change."""
        times, starts = np.unique(self.times, return_index=True)
        return times, np.append(starts, len(self.times))

    def known_traffic(self, top_k: int = TOP_K) -> np.ndarray:
        """Per-doc retrieval shares as the policy sees them: the top-k docs' own shares, the
        rest of each shard sharing its remainder equally (as `freshness.state.traffic`)."""
        top = np.argsort(-self.popularity, kind="stable")[:top_k]
        known = np.zeros(len(self.popularity), bool)
        known[top] = True
        shards = len(self.shard_names)
        rest = np.bincount(self.doc_shard[~known], weights=self.popularity[~known],
                           minlength=shards)
        count = np.bincount(self.doc_shard[~known], minlength=shards)
        return np.where(known, self.popularity, (rest / np.maximum(count, 1))[self.doc_shard])


# ---- scoring a schedule -----------------------------------------------------------------------

def evaluate(log: ChangeLog, run_times: np.ndarray, run_shards: list[np.ndarray],
             costs: CostModel, policy: str = "schedule", parameter: float = 0.0,
             budget: float | None = None) -> SimResult:
    """Freshness and spend of a schedule: runs at `run_times` (seconds), each embedding what is
    pending in the shards `run_shards[i]` (their partition range is listed)."""
    inside = run_times <= log.horizon  # a run after the log ends is not part of it
    run_times = np.asarray(run_times, float)[inside]
    run_shards = [x for x, keep in zip(run_shards, inside) if keep]
    runs = len(run_times)
    shards = len(log.shard_names)
    end = np.full(len(log.times), log.horizon)
    run_id = np.full(len(log.times), runs)
    member = np.zeros((shards, runs), bool)
    for r, included in enumerate(run_shards):
        member[included, r] = True
    for s in range(shards):
        mine = np.flatnonzero(log.shards == s)
        if not len(mine):
            continue
        ids = np.flatnonzero(member[s])
        k = np.searchsorted(run_times[ids], log.times[mine], side="left")
        done = k < len(ids)
        run_id[mine[done]] = ids[k[done]]
        end[mine[done]] = run_times[ids[k[done]]]
    order = np.lexsort((run_id, log.docs))
    doc, rid = log.docs[order], run_id[order]
    first = np.ones(len(order), bool)
    first[1:] = (doc[1:] != doc[:-1]) | (rid[1:] != rid[:-1])
    starts = np.flatnonzero(first)
    lasts = np.append(starts[1:], len(order)) - 1
    g_doc, g_run = doc[starts], rid[starts]
    g_first, g_end = log.times[order][starts], end[order][starts]
    g_delete = log.deletes[order][lasts]
    waited = g_end - g_first
    q = log.popularity
    # lifetime: from time 0 (initial docs) or the first change; a propagated deletion ends it
    # until the doc comes back
    alive_from = np.full(len(q), np.nan)
    changed_first = np.full(len(q), np.inf)
    np.minimum.at(changed_first, log.docs, log.times)
    alive_from[np.isfinite(changed_first)] = changed_first[np.isfinite(changed_first)]
    alive_from[log.initial_docs] = 0.0
    exists = ~np.isnan(alive_from)
    lifetime = np.where(exists, log.horizon - np.nan_to_num(alive_from), 0.0)
    closed = g_delete & (g_run < runs)
    following = np.append(g_doc[1:] == g_doc[:-1], False)
    back = np.where(following, np.append(g_first[1:], log.horizon), log.horizon)
    gap = np.where(closed, back - g_end, 0.0)
    doc_time = lifetime.sum() - gap.sum()
    w_doc_time = (q * lifetime).sum() - (q[g_doc] * gap).sum()
    embedded = np.bincount(g_run[g_run < runs], minlength=runs)
    scanned = np.array([ix.max() - ix.min() + 1 if len(ix) else 0 for ix in run_shards])
    active = embedded > 0
    gpu = float((costs.overhead_s + costs.listing_s * scanned[active]
                 + costs.per_doc_s * embedded[active]).sum())
    days = max(log.horizon / DAY_S, 1e-9)
    return SimResult(
        policy, parameter, budget, days, int(active.sum()), gpu,
        freshness=1 - waited.sum() / doc_time if doc_time else 1.0,
        mean_age_hours=(waited ** 2 / 2).sum() / doc_time / 3600 if doc_time else 0.0,
        retrieval_weighted_freshness=1 - (q[g_doc] * waited).sum() / w_doc_time
        if w_doc_time else 1.0,
        run_times=run_times[active], run_shards=[x for x, a in zip(run_shards, active) if a])


def _changed_shards(log: ChangeLog, cycle: np.ndarray, runs: int) -> list[np.ndarray]:
    """Per cycle index 0..runs-1, the shards that changed in it."""
    pairs = np.unique(cycle * len(log.shard_names) + log.shards)
    by_run = pairs // len(log.shard_names)
    cut = np.searchsorted(by_run, np.arange(runs + 1))
    shard = pairs % len(log.shard_names)
    return [shard[cut[r]:cut[r + 1]] for r in range(runs)]


# ---- baselines -------------------------------------------------------------------------------

def immediate(log: ChangeLog) -> tuple[np.ndarray, list[np.ndarray]]:
    times, _ = log.events()
    cycle = np.searchsorted(times, log.times)
    return times, _changed_shards(log, cycle, len(times))


def uniform(log: ChangeLog, interval_days: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """One batched run of everything pending every `interval_days` (skipped when idle)."""
    step = interval_days * DAY_S
    tick = np.floor(log.times / step).astype(np.int64) + 1
    ticks, cycle = np.unique(tick, return_inverse=True)
    return ticks * step, _changed_shards(log, cycle, len(ticks))


def threshold(log: ChangeLog, pending_docs: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """A batched run as soon as `pending_docs` docs are pending (all shards)."""
    times, offsets = log.events()
    pending: set[int] = set()
    shards: set[int] = set()
    run_times, run_shards = [], []
    docs, doc_shard = log.docs.tolist(), log.shards.tolist()
    for e, t in enumerate(times.tolist()):
        for c in range(offsets[e], offsets[e + 1]):
            pending.add(docs[c])
            shards.add(doc_shard[c])
        if len(pending) >= pending_docs:
            run_times.append(t)
            run_shards.append(np.array(sorted(shards)))
            pending, shards = set(), set()
    return np.array(run_times, dtype=float), run_shards


def proportional(log: ChangeLog, interval_days: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """Each shard ticks every interval × (mean shard rate / its rate), from its whole-log rate
    (hindsight); a tick of a pending shard starts a batched run of everything pending."""
    shards = len(log.shard_names)
    counts = np.bincount(log.shards, minlength=shards).astype(float)
    rates = np.maximum(counts, 0.5) / max(log.horizon, 1.0)
    period = (interval_days * DAY_S * rates.mean() / rates)[log.shards]
    # a tick can only start a run if its shard changed since its previous tick
    tick = (np.floor(log.times / period) + 1) * period
    candidates = np.unique(np.stack([tick, log.shards.astype(float)]), axis=1)
    order = np.argsort(candidates[0], kind="stable")
    by_shard = [log.times[log.shards == s] for s in range(shards)]
    last_run = -1.0
    run_times = []
    for t, s in candidates[:, order].T.tolist():
        changes = by_shard[int(s)]
        k = np.searchsorted(changes, t, side="right")
        if k and changes[k - 1] > last_run:  # shard s changed since the last run
            run_times.append(t)
            last_run = t
    times = np.array(run_times, dtype=float)
    cycle = np.searchsorted(times, log.times, side="left")
    return times, _changed_shards(log, cycle, len(times))


# ---- the production loop ---------------------------------------------------------------------

def adaptive(log: ChangeLog, config: LoopConfig, poll_times: np.ndarray | None = None,
             replan_days: float = REPLAN_DAYS, top_k: int = TOP_K
             ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Replay the log through `control.decide`, as the sensor calls it: after each change (or at
    `poll_times`, seconds) and whenever the decision asks to be woken."""
    q = log.known_traffic(top_k)
    shards = len(log.shard_names)
    pending = np.zeros(len(q), bool)
    pending_list: list[list[int]] = [[] for _ in range(shards)]
    count = np.zeros(shards)
    rate = np.zeros(shards)
    oldest = np.full(shards, np.nan)
    last_run = np.full(shards, np.nan)
    arrivals_t = np.zeros(len(log.times))
    arrivals_q = np.zeros(len(log.times))
    n_arrivals = 0
    run_t, run_c, run_shards = [], [], []
    times, offsets = log.events()
    polls = times / DAY_S if poll_times is None else np.sort(poll_times) / DAY_S
    change_days = times / DAY_S
    never = np.zeros(shards, bool)
    plan: LoopPlan | None = None
    e, p, wake = 0, 0, math.inf
    docs, doc_shard = log.docs.tolist(), log.shards.tolist()
    end = log.horizon / DAY_S
    while True:
        poll = polls[p] if p < len(polls) else math.inf
        now = min(poll, wake)
        if now > end or math.isinf(now):
            break
        while e < len(change_days) and change_days[e] <= now:  # the source moved: detection
            for c in range(offsets[e], offsets[e + 1]):
                d = docs[c]
                arrivals_t[n_arrivals], arrivals_q[n_arrivals] = change_days[e], q[d]
                n_arrivals += 1  # every change the poll sees, pending before or not
                if not pending[d]:
                    s = doc_shard[c]
                    pending[d] = True
                    pending_list[s].append(d)
                    count[s] += 1
                    rate[s] += q[d]
                    if not oldest[s] <= change_days[e]:
                        oldest[s] = change_days[e]
            e += 1
        if now == poll:
            p += 1
        inputs = LoopInputs(log.shard_names, count, rate, oldest, last_run, never, now, 0.0,
                            np.array(run_t), np.array(run_c), arrivals_t[:n_arrivals],
                            arrivals_q[:n_arrivals])
        if config.fixed_threshold is None and (plan is None
                                               or now - plan.planned_at_days >= replan_days):
            plan = plan_threshold(config, inputs)
        decision = decide(config, inputs, plan)
        wake = decision.next_check_days if decision.next_check_days > now else math.inf
        if decision.run_shards:
            ran = np.flatnonzero(np.isin(log.shard_names, decision.run_shards))
            run_t.append(now)
            run_c.append(decision.run_cost_s)
            run_shards.append(ran)
            for s in ran:
                for d in pending_list[s]:
                    pending[d] = False
                pending_list[s] = []
            count[ran], rate[ran], oldest[ran], last_run[ran] = 0, 0.0, np.nan, now
            wake = now  # decide again: shards held back by min_interval may wait on a deadline
    return np.array(run_t) * DAY_S, run_shards


# ---- the clairvoyant limit -------------------------------------------------------------------

def _oracle_schedule(log: ChangeLog, costs: CostModel, price: float
                     ) -> tuple[np.ndarray, float]:
    """Event indices of the runs minimising stale mass + price × GPU seconds, knowing the
    future (all pending shards ride along). Dynamic programming over change instants:
    f[j] = min_i f[i] + stale(i, j) + price × cost(i, j), where a run at event j embeds
    everything changed in (t_i, t_j]."""
    times, offsets = log.events()
    n = len(times)
    q = log.popularity
    last_doc = np.full(len(q), 0)  # 1-based event index of each doc's previous change (0: none)
    last_shard = np.full(len(log.shard_names), 0)
    mass = np.zeros(n + 1)  # per cycle start i (0 = time 0): pending stale rate now
    stale = np.zeros(n + 1)  # per cycle start: stale mass accrued so far
    docs = np.zeros(n + 1)
    shards = np.zeros(n + 1)
    best = np.zeros(n + 1)
    back = np.zeros(n + 1, dtype=np.int64)
    prev_t = 0.0
    for j in range(1, n + 1):
        t = times[j - 1]
        stale[:j] += mass[:j] * (t - prev_t)
        prev_t = t
        for c in range(offsets[j - 1], offsets[j]):
            d, s = log.docs[c], log.shards[c]
            p = last_doc[d]
            if p < j:  # newly pending for every cycle that started at or after its last change
                mass[p:j] += q[d]
                docs[p:j] += 1
                last_doc[d] = j
            ps = last_shard[s]
            if ps < j:
                shards[ps:j] += 1
                last_shard[s] = j
        total = best[:j] + stale[:j] + price * (costs.overhead_s + costs.listing_s * shards[:j]
                                                + costs.per_doc_s * docs[:j])
        i = int(np.argmin(total))
        best[j], back[j] = total[i], i
    final = best + stale + mass * (log.horizon - prev_t)
    j = int(np.argmin(final))
    objective = float(final[j])
    chosen = []
    while j > 0:
        chosen.append(j - 1)
        j = back[j]
    return np.array(sorted(chosen), dtype=np.int64), objective


def oracle(log: ChangeLog, budget: float, costs: CostModel, iterations: int = 20) -> SimResult:
    """The clairvoyant schedule with the largest spend within `budget` (bisection on the price
    of a GPU second), and the Lagrangian lower bound on the stale share at exactly the budget."""
    times, _ = log.events()
    cycle_of = np.searchsorted(times, log.times)

    def schedule(price: float) -> tuple[SimResult, float]:
        chosen, objective = _oracle_schedule(log, costs, price)
        cycle = np.searchsorted(chosen, cycle_of, side="left")
        run_shards = _changed_shards(log, cycle, len(chosen))
        result = evaluate(log, times[chosen], run_shards, costs, "oracle", price, budget)
        return result, objective

    # the largest Σ q × lifetime (no deletion ever propagated) keeps the bound a lower bound
    weight = float((log.popularity * _lifetimes(log)).sum())
    allowed = budget * log.horizon / DAY_S  # GPU seconds over the log
    low, high = 1e-6, 1e9  # price of a GPU second in retrieval-share × seconds
    best, bound = None, 0.0
    for _ in range(iterations):
        mid = math.sqrt(low * high)
        result, objective = schedule(mid)
        bound = max(bound, (objective - mid * allowed) / weight)
        if result.gpu_seconds_per_day <= budget:
            if best is None or result.stale_share < best.stale_share:
                best = result
            high = mid
        else:
            low = mid
    best = best or schedule(high)[0]
    best.lower_bound_stale = bound
    return best


def _lifetimes(log: ChangeLog) -> np.ndarray:
    first = np.full(len(log.popularity), np.inf)
    np.minimum.at(first, log.docs, log.times)
    first[log.initial_docs] = 0.0
    return np.where(np.isfinite(first), log.horizon - np.where(np.isfinite(first), first, 0), 0)


# ---- running and calibrating -----------------------------------------------------------------

_SCHEDULES: dict[str, Callable] = {"uniform": uniform, "proportional": proportional,
                                   "threshold": threshold}


def simulate(log: ChangeLog, policy: str, parameter: float, costs: CostModel,
             budget: float | None = None, config: LoopConfig | None = None,
             poll_times: np.ndarray | None = None) -> SimResult:
    """One policy over the whole log. `parameter`: uniform/proportional → interval days,
    threshold → pending docs, adaptive/oracle → GPU seconds per day, adaptive-fixed → the
    loop's threshold K; immediate ignores it."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}: use one of {', '.join(POLICIES)}")
    if policy == "oracle":
        return oracle(log, parameter, costs)
    if policy == "immediate":
        times, shards = immediate(log)
    elif policy == "adaptive":
        config = config or LoopConfig(parameter, costs)
        times, shards = adaptive(log, config, poll_times)
    elif policy == "adaptive-fixed":  # the same loop with its threshold K set by hand
        config = config or LoopConfig(math.inf, costs, fixed_threshold=parameter)
        times, shards = adaptive(log, config, poll_times)
    else:
        times, shards = _SCHEDULES[policy](log, parameter)
    return evaluate(log, times, shards, costs, policy, parameter, budget)


def calibrate(log: ChangeLog, policy: str, budget: float, costs: CostModel,
              iterations: int = 22) -> SimResult:
    """For a baseline, the knob that spends as much of `budget` (GPU s/day) as it can, not more
    (hindsight). Adaptive and oracle take the budget as it is."""
    if policy in ("adaptive", "oracle", "immediate"):
        return simulate(log, policy, budget, costs, budget)
    if policy == "threshold":
        low, high = 1.0, float(len(log.times)) + 1
    elif policy == "adaptive-fixed":  # K, in retrieval share × days
        low, high = 1e-9, 10.0
    else:  # interval days: spend falls as the interval grows
        low, high = 1e-4, 4 * log.horizon / DAY_S
    best: SimResult | None = None
    for _ in range(iterations):
        mid = math.sqrt(low * high)
        if policy == "threshold":
            mid = float(max(1, round(mid)))
        result = simulate(log, policy, mid, costs, budget)
        fits = result.gpu_seconds_per_day <= budget
        if fits and (best is None or result.stale_share < best.stale_share):
            best = result
        low, high = (low, mid) if fits else (mid, high)  # spend falls as the knob grows
        if policy == "threshold" and high - low <= 1:
            break
    if best is None:  # even the thriftiest setting overspends: report it, marked
        best = simulate(log, policy, high, costs, budget)
    return best


def compare(log: ChangeLog, budgets: list[float], costs: CostModel,
            policies: tuple[str, ...] = POLICIES) -> list[dict]:
    """Every policy at every budget, baselines calibrated to spend no more than the budget."""
    rows = []
    for budget in budgets:
        for policy in policies:
            if policy != "immediate":
                rows.append(calibrate(log, policy, budget, costs).as_dict())
    if "immediate" in policies:
        rows.append(simulate(log, "immediate", 0.0, costs).as_dict())
    return rows
