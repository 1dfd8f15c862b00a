"""Closed forms of the refresh model: freshness, age and cost of a shard under a policy.

Changes to each doc arrive as a Poisson process (rate `mu` per doc per day); periodic sync at
frequency f (Cho & Garcia-Molina, TODS 2003): freshness (1 - e^-r)/r and age
(1/f)(1/2 - 1/r + (1 - e^-r)/r^2) with r = mu/f.
"""

from __future__ import annotations

import math


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
