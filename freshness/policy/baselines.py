"""The baselines the policy is measured against: batched runs on a clock (uniform), on each
shard's clock ∝ its change rate (proportional), or when N docs are pending (threshold); plus
`immediate`, a run after every change. The simulator calibrates their knobs with hindsight.

`threshold_paced` is the threshold rule as one could deploy it instead of the adaptive loop: N
planned from the changes seen so far, and a run only when the budget accrued covers it (the
deployable uniform is the adaptive loop itself with K = 0, see the simulator)."""

from __future__ import annotations

import math

import numpy as np

from freshness.policy.planner import CostModel
from freshness.policy.replay import ChangeLog, changed_shards
from freshness.util.timeutil import DAY_S


def immediate(log: ChangeLog) -> tuple[np.ndarray, list[np.ndarray]]:
    times, _ = log.events()
    cycle = np.searchsorted(times, log.times)
    return times, changed_shards(log, cycle, len(times))


def uniform(log: ChangeLog, interval_days: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """One batched run of everything pending every `interval_days` (skipped when idle)."""
    step = interval_days * DAY_S
    tick = np.floor(log.times / step).astype(np.int64) + 1
    ticks, cycle = np.unique(tick, return_inverse=True)
    return ticks * step, changed_shards(log, cycle, len(ticks))


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
    return times, changed_shards(log, cycle, len(times))


def threshold_paced(log: ChangeLog, budget: float, costs: CostModel, replan_days: float = 7.0,
                    grid_size: int = 121) -> tuple[np.ndarray, list[np.ndarray]]:
    """A batched run when N docs are pending and the budget accrued so far covers it; every
    `replan_days` N becomes the smallest count whose replay over the changes seen so far stays
    within the budget accrued over them (causal: no hindsight)."""
    times, offsets = log.events()
    docs, doc_shard = log.docs.tolist(), log.shards.tolist()
    fixed = costs.run_s(len(log.shard_names) / 2, 0)  # a typical run: half the shards
    per_event = np.diff(offsets).astype(float)
    pending: set[int] = set()
    shards: set[int] = set()
    run_times, run_shards = [], []
    spent, n_docs, planned = 0.0, math.inf, -math.inf
    for e, t in enumerate(times.tolist()):
        day = t / DAY_S
        for c in range(offsets[e], offsets[e + 1]):
            pending.add(docs[c])
            shards.add(doc_shard[c])
        if day - planned >= replan_days:
            planned = day
            allowed = (budget * day - costs.per_doc_s * offsets[e + 1]) / fixed
            n_docs = _plan_count(per_event[:e + 1], allowed, grid_size)
        if len(pending) >= n_docs:
            cost = costs.run_s(max(shards) - min(shards) + 1, len(pending))
            if budget * day - spent >= cost:
                run_times.append(t)
                run_shards.append(np.array(sorted(shards)))
                spent += cost
                pending, shards = set(), set()
    return np.array(run_times, dtype=float), run_shards


def _plan_count(changes: np.ndarray, allowed: float, grid_size: int) -> float:
    """The smallest N (log grid) whose replay — a run each time N changes have gathered — makes
    at most `allowed` runs."""
    if allowed < 1:
        return math.inf
    grid = np.unique(np.round(np.logspace(0, math.log10(changes.sum() + 1), grid_size)))
    gathered = np.zeros(len(grid))
    runs = np.zeros(len(grid))
    for n in changes.tolist():
        gathered += n
        fired = gathered >= grid
        runs += fired
        gathered[fired] = 0.0
    fits = np.flatnonzero(runs <= allowed)
    return float(grid[fits[0]]) if len(fits) else math.inf
