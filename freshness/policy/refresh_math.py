"""Closed forms of the refresh model: freshness, age and cost of a shard under a policy.

Changes to each doc arrive as a Poisson process (rate `mu` per doc per day). Two policies:
- periodic sync at frequency f (Cho & Garcia-Molina, TODS 2003): freshness (1 - e^-r)/r and
  age (1/f)(1/2 - 1/r + (1 - e^-r)/r^2) with r = mu/f;
- wait-after-first-change (ours): when a shard sees its first pending change, wait `delay`
  (to batch later changes), then sync; evaluated over arrays of shards, since the planner
  evaluates thousands at once. See docs/policy.md for the derivation.
"""

from __future__ import annotations

import math

import numpy as np


def periodic_freshness(rate: float, frequency: float) -> float:
    """Expected fraction of docs current under periodic sync (time average)."""
    if frequency <= 0:
        return 0.0 if rate > 0 else 1.0
    r = rate / frequency
    return 1.0 if r == 0 else -math.expm1(-r) / r


def periodic_age(rate: float, frequency: float) -> float:
    """Expected age (time since the doc became stale, 0 when current) under periodic sync."""
    if frequency <= 0:
        return math.inf if rate > 0 else 0.0
    r = rate / frequency
    if r < 1e-6:
        return r / (6 * frequency)  # series limit
    return (0.5 - 1 / r + -math.expm1(-r) / r**2) / frequency


def delayed_cycle_arrays(docs: np.ndarray, rate: np.ndarray, delay: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per shard: (cycle length, expected stale doc-time per cycle, docs changed per run).

    Policy: idle until the shard's first change (shard rate docs·rate), then wait `delay` and
    sync. During the wait the first doc is stale throughout and each other doc becomes stale
    at its own first change."""
    shard_rate = docs * rate
    others = np.maximum(docs - 1, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        waited = np.where(rate > 0, delay + np.expm1(-rate * delay) / np.where(rate > 0, rate, 1),
                          0.0)
        cycle = np.where(shard_rate > 0, 1 / np.where(shard_rate > 0, shard_rate, 1) + delay,
                         np.inf)
    stale_time = np.where(shard_rate > 0, delay + others * waited, 0.0)
    changed = np.where(shard_rate > 0, 1 + others * -np.expm1(-rate * delay), 0.0)
    return cycle, stale_time, changed
