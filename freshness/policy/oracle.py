"""The clairvoyant limit: the best batched schedule for its spend, knowing every future change
and query (dynamic programming over change instants with a Lagrange multiplier on the budget),
and a Lagrangian lower bound on stale retrievals at exactly the budget."""

from __future__ import annotations

import math

import numpy as np

from freshness.policy.planner import CostModel
from freshness.policy.replay import ChangeLog, SimResult, changed_shards, evaluate
from freshness.util.timeutil import DAY_S


def _oracle_schedule(log: ChangeLog, costs: CostModel, price: float
                     ) -> tuple[np.ndarray, float]:
    """Event indices of the runs minimising stale mass + price × GPU seconds, knowing the
    future (all pending shards ride along). Dynamic programming over change instants:
    f[j] = min_i f[i] + stale(i, j) + price × cost(i, j), where a run at event j embeds
    everything changed in (t_i, t_j]. A shard whose last doc goes is retired then, for free
    (`ChangeLog.vanishings`): from then on nothing of it is pending in any cycle."""
    times, offsets = log.events()
    n = len(times)
    q = log.popularity
    gone_t, gone_s = log.vanishings()
    retired = np.searchsorted(times, gone_t)  # the event index of each retirement
    members = {s: np.flatnonzero(log.doc_shard == s) for s in set(gone_s.tolist())}
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
        for s in gone_s[retired == j - 1].tolist():  # pending in cycles before its last change
            for d in members[s][last_doc[members[s]] > 0].tolist():
                mass[:last_doc[d]] -= q[d]
                docs[:last_doc[d]] -= 1
                last_doc[d] = 0  # if it comes back, it is pending for every cycle
            shards[:last_shard[s]] -= 1
            last_shard[s] = 0
        total = best[:j] + stale[:j] + price * costs.run_s(shards[:j], docs[:j])
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
        run_shards = changed_shards(log, cycle, len(chosen))
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
