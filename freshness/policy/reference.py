"""Reference formulas the planner is checked against (Cho & Garcia-Molina, TODS 2003).

`optimal_frequencies` spreads a sync budget over pages with known change rates to maximise mean
freshness (or minimise mean age) — the classic periodic allocation. Only tests use it: the
production decision is `freshness.policy.control.decide`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from freshness.policy.refresh_math import periodic_age, periodic_freshness


def _marginal(objective: str, rate: float, weight: float, frequency: float) -> float:
    """d(benefit)/d(frequency): freshness gained, or age removed, per extra sync."""
    r = rate / frequency
    if objective == "freshness":
        return weight / rate * (-math.expm1(-r) - r * math.exp(-r))
    h = 0.5 - 1 / r + -math.expm1(-r) / r**2
    dh = 1 / r**2 + math.exp(-r) / r**2 - 2 * -math.expm1(-r) / r**3
    return weight / frequency**2 * (h + r * dh)


def optimal_frequencies(change_rates: Sequence[float], budget: float,
                        weights: Sequence[float] | None = None, objective: str = "freshness",
                        costs: Sequence[float] | None = None) -> list[float]:
    """Cho & Garcia-Molina's optimal sync frequencies: maximise sum w_i F(lambda_i, f_i)
    (or minimise weighted age) subject to sum c_i f_i = budget.

    Lagrange condition w_i dF/df_i = mu c_i per element; elements whose best marginal gain is
    below mu get f = 0 (for freshness, the fastest-changing ones can be abandoned).
    """
    if objective not in {"freshness", "age"}:
        raise ValueError("objective must be 'freshness' or 'age'")
    rates = [float(x) for x in change_rates]
    weights = [1.0] * len(rates) if weights is None else [float(w) for w in weights]
    costs = [1.0] * len(rates) if costs is None else [float(c) for c in costs]

    def frequency_for(mu: float, i: int) -> float:
        if rates[i] <= 0 or weights[i] <= 0:
            return 0.0
        if objective == "freshness" and weights[i] / rates[i] <= mu * costs[i]:
            return 0.0
        low, high = 1e-12, 1e12
        for _ in range(200):  # marginal gain decreases with frequency
            mid = math.sqrt(low * high)
            if _marginal(objective, rates[i], weights[i], mid) > mu * costs[i]:
                low = mid
            else:
                high = mid
        return math.sqrt(low * high)

    def spent(mu: float) -> float:
        return sum(c * frequency_for(mu, i) for i, c in enumerate(costs))

    low, high = 1e-15, 1e15
    for _ in range(200):
        mid = math.sqrt(low * high)
        low, high = (mid, high) if spent(mid) > budget else (low, mid)
    frequencies = [frequency_for(high, i) for i in range(len(rates))]
    total = sum(c * f for c, f in zip(costs, frequencies))
    if total < budget * (1 - 1e-9):
        # Budgets tiny next to the rates make the marginal gain flat near w/λ (freshness is
        # ≈ f/λ): μ cannot be resolved in floating point. Share what is left among the
        # elements at the margin, which are interchangeable there.
        margin = [i for i in range(len(rates)) if rates[i] > 0 and weights[i] > 0
                  and weights[i] / (rates[i] * costs[i]) >= high * (1 - 1e-9)]
        for i in margin:
            frequencies[i] += (budget - total) / len(margin) / costs[i]
        total = sum(c * f for c, f in zip(costs, frequencies))
    # remove the bisection's last sliver so that the budget is spent exactly
    return [f * budget / total for f in frequencies] if total > 0 else frequencies


def mean_objective(change_rates: Sequence[float], frequencies: Sequence[float],
                   weights: Sequence[float] | None = None, objective: str = "freshness") -> float:
    """Weighted mean freshness (or age) of a periodic allocation."""
    weights = [1.0] * len(change_rates) if weights is None else list(weights)
    fn = periodic_freshness if objective == "freshness" else periodic_age
    total = sum(weights)
    return sum(w * fn(r, f) for r, f, w in zip(change_rates, frequencies, weights)) / total
