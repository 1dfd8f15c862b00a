"""Change-rate estimation per shard (Poisson model), and change-rate spike detection.

Three observation regimes:
- a full change log (every change seen): rate = changes / exposure (doc-time), with the exact
  Garwood confidence interval;
- periodic polls that only tell whether a doc changed since the last poll (several changes look
  like one): the estimators of Cho & Garcia-Molina, "Estimating frequency of change", ACM TOIT
  3(3), 2003 — `poll_rate_estimate`, `last_modified_rate_estimate`, `irregular_rate_mle`;
- per-window change counts watched for a jump: a Poisson CUSUM (`PoissonCusum`).
Rates are per doc per unit of the time argument (use days throughout the package).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class RateEstimate:
    """A Poisson rate with a two-sided confidence interval."""

    rate: float
    low: float
    high: float
    events: int
    exposure: float


def poisson_rate(events: int, exposure: float, confidence: float = 0.95) -> RateEstimate:
    """Rate = events / exposure with the exact (Garwood) interval from chi-square quantiles."""
    if exposure <= 0:
        raise ValueError(f"exposure must be positive, got {exposure}")
    alpha = 1.0 - confidence
    from scipy import stats  # lazy: scipy costs ~1.5 s to import, every CLI call paid it

    low = stats.chi2.ppf(alpha / 2, 2 * events) / 2 / exposure if events else 0.0
    high = stats.chi2.ppf(1 - alpha / 2, 2 * events + 2) / 2 / exposure
    return RateEstimate(events / exposure, float(low), float(high), events, exposure)


def gamma_posterior_rate(events: int, exposure: float, prior_events: float = 0.5,
                         prior_exposure: float = 0.0) -> float:
    """Posterior mean rate under a Gamma(prior_events, prior_exposure) prior (Jeffreys default).

    Useful for shards with little history: it never returns 0 or infinity.
    """
    return (events + prior_events) / max(exposure + prior_exposure, 1e-12)


def poll_rate_estimate(n_polls: int, n_changed: int, interval: float) -> float:
    """Improved estimator for equal poll intervals: -ln((n - X + 0.5) / (n + 0.5)) / interval.

    Unlike the naive -ln(1 - X/n), it stays finite when every poll saw a change (X = n) and
    is nearly unbiased for moderate n (Cho & Garcia-Molina 2003, section 4).
    """
    if n_polls <= 0 or interval <= 0:
        raise ValueError("n_polls and interval must be positive")
    if not 0 <= n_changed <= n_polls:
        raise ValueError(f"n_changed must be in [0, n_polls], got {n_changed}")
    return -math.log((n_polls - n_changed + 0.5) / (n_polls + 0.5)) / interval


def last_modified_rate_estimate(n_polls: int, n_changed: int, total_time: float) -> float:
    """Estimator when each poll also reveals the last-modified time (section 5).

    `total_time` is the sum over polls of the time covered since the last change seen (the
    interval itself when no change happened): rate = (X - 1 - X / (n ln(1 - X/n))) / T.
    """
    if n_polls <= 0 or total_time <= 0:
        raise ValueError("n_polls and total_time must be positive")
    if not 0 <= n_changed <= n_polls:
        raise ValueError(f"n_changed must be in [0, n_polls], got {n_changed}")
    if n_changed == 0:
        return 0.0
    correction = 0.0 if n_changed == n_polls else \
        n_changed / (n_polls * math.log(1 - n_changed / n_polls))
    return max(0.0, (n_changed - 1 - correction) / total_time)


def irregular_rate_mle(changed_intervals: Sequence[float],
                       unchanged_intervals: Sequence[float]) -> float:
    """Maximum-likelihood rate for polls at irregular intervals (section 6).

    Solves sum_i t_i / (exp(rate t_i) - 1) = sum_j u_j over changed intervals t_i and
    unchanged intervals u_j. No change seen gives 0; no unchanged interval gives infinity.
    """
    changed = [t for t in changed_intervals if t > 0]
    quiet = float(sum(u for u in unchanged_intervals if u > 0))
    if not changed:
        return 0.0
    if quiet == 0:
        return math.inf

    def balance(rate: float) -> float:
        return sum(t / math.expm1(rate * t) for t in changed) - quiet

    low, high = 1e-12, 1.0
    while balance(high) > 0:
        high *= 2
    from scipy import optimize

    return float(optimize.brentq(balance, low, high, xtol=1e-14, rtol=1e-12))


@dataclass
class PoissonCusum:
    """One-sided Poisson CUSUM: alarms when counts run above `ratio` × the baseline rate.

    Each window contributes the log-likelihood ratio x ln(m1/m0) - (m1 - m0), with
    m0 = baseline_rate × exposure and m1 = ratio × m0; the statistic resets at 0 and alarms
    above `threshold` (h ≈ 4–5 gives a long in-control run length).
    """

    baseline_rate: float
    ratio: float = 2.0
    threshold: float = 5.0
    statistic: float = 0.0

    def update(self, count: int, exposure: float) -> bool:
        """Add one window's count; True when the statistic crosses the threshold."""
        m0 = max(self.baseline_rate * exposure, 1e-12)
        m1 = self.ratio * m0
        self.statistic = max(0.0, self.statistic + count * math.log(m1 / m0) - (m1 - m0))
        return self.statistic > self.threshold

    def run(self, counts: Sequence[int], exposures: Sequence[float]) -> list[int]:
        """Indices of windows that raised an alarm (the statistic resets after each)."""
        alarms = []
        for index, (count, exposure) in enumerate(zip(counts, exposures)):
            if self.update(count, exposure):
                alarms.append(index)
                self.statistic = 0.0
        return alarms


def grouped_poll_rate_mle(intervals: Sequence[float], changed: Sequence[int],
                          totals: Sequence[int]) -> float:
    """`irregular_rate_mle` for polls of many docs: poll k covered `totals[k]` docs over
    `intervals[k]`, of which `changed[k]` had changed. Solves
    sum_k X_k I_k / (exp(rate I_k) - 1) = sum_k (N_k - X_k) I_k."""
    polls = [(float(i), int(x), int(n)) for i, x, n in zip(intervals, changed, totals)
             if i > 0 and n > 0]
    quiet = sum((n - x) * i for i, x, n in polls)
    if not any(x for _, x, _ in polls):
        return 0.0
    if quiet == 0:
        return math.inf

    def balance(rate: float) -> float:
        return sum(x * i / math.expm1(rate * i) for i, x, _ in polls if x) - quiet

    high = 1.0
    while balance(high) > 0:
        high *= 2
    from scipy import optimize

    return float(optimize.brentq(balance, 1e-12, high, xtol=1e-14, rtol=1e-12))
