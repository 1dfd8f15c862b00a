"""The baselines the policy is measured against: batched runs on a clock (uniform), on each
shard's clock ∝ its change rate (proportional), or when N docs are pending (threshold); plus
`immediate`, a run after every change. The simulator calibrates their knobs with hindsight."""

from __future__ import annotations

import numpy as np

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
