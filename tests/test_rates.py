"""Change-rate estimators: known values, limits, bias, and the spike detector."""

import math
import random

import pytest

from freshness.util.rates import (
    PoissonCusum,
    grouped_poll_rate_mle,
    irregular_rate_mle,
    last_modified_rate_estimate,
    poisson_rate,
    poll_rate_estimate,
)


def test_poisson_rate_with_exact_garwood_interval():
    estimate = poisson_rate(10, 5.0)
    assert estimate.rate == 2.0
    assert estimate.low == pytest.approx(4.795 / 5, abs=1e-3)
    assert estimate.high == pytest.approx(18.390 / 5, abs=1e-3)
    zero = poisson_rate(0, 10.0)
    assert zero.low == 0.0 and zero.high == pytest.approx(3.689 / 10, abs=1e-3)


def test_poll_estimator_limits():
    assert poll_rate_estimate(10, 0, 1.0) == 0.0
    assert poll_rate_estimate(10, 10, 2.0) == pytest.approx(math.log(21) / 2)  # finite at X = n
    with pytest.raises(ValueError):
        poll_rate_estimate(10, 11, 1.0)


def simulate_polls(rng: random.Random, rate: float, n: int, interval: float) -> int:
    return sum(rng.random() < 1 - math.exp(-rate * interval) for _ in range(n))


def test_poll_estimator_is_nearly_unbiased_where_the_naive_one_is_not():
    rng, rate, n, interval = random.Random(1), 0.8, 30, 1.0
    improved, naive = [], []
    for _ in range(3000):
        x = simulate_polls(rng, rate, n, interval)
        improved.append(poll_rate_estimate(n, x, interval))
        naive.append(x / (n * interval))  # changes counted once per poll
    assert sum(improved) / len(improved) == pytest.approx(rate, rel=0.03)
    assert sum(naive) / len(naive) < rate * 0.75  # misses changes that coincide


def test_last_modified_estimator_limits_and_consistency():
    assert last_modified_rate_estimate(5, 0, 10.0) == 0.0
    assert last_modified_rate_estimate(5, 5, 10.0) == pytest.approx(4 / 10)
    rng, rate, interval, n = random.Random(2), 0.5, 1.0, 4000
    changed, total = 0, 0.0
    for _ in range(n):  # each poll: did it change, and time since its last change
        times, t = [], rng.expovariate(rate)
        while t < interval:
            times.append(t)
            t += rng.expovariate(rate)
        if times:
            changed += 1
            total += interval - times[-1]
        else:
            total += interval
    assert last_modified_rate_estimate(n, changed, total) == pytest.approx(rate, rel=0.05)


def test_irregular_mle_matches_the_equal_interval_closed_form():
    n, x, interval = 40, 13, 2.0
    mle = irregular_rate_mle([interval] * x, [interval] * (n - x))
    assert mle == pytest.approx(-math.log(1 - x / n) / interval, rel=1e-9)
    assert irregular_rate_mle([], [1.0]) == 0.0
    assert irregular_rate_mle([1.0], []) == math.inf
    assert grouped_poll_rate_mle([interval], [x], [n]) == pytest.approx(mle, rel=1e-9)


def test_grouped_mle_recovers_a_rate_from_irregular_polls():
    rng, rate = random.Random(3), 0.3
    intervals = [rng.uniform(0.2, 5.0) for _ in range(300)]
    changed = [simulate_polls(rng, rate, 20, i) for i in intervals]
    assert grouped_poll_rate_mle(intervals, changed, [20] * 300) == pytest.approx(rate, rel=0.08)


def test_cusum_is_quiet_on_baseline_and_alarms_after_a_jump():
    rng = random.Random(4)

    def poisson(mean: float) -> int:
        count, t = 0, rng.expovariate(1.0)
        while t < mean:
            count, t = count + 1, t + rng.expovariate(1.0)
        return count

    baseline = [poisson(5.0) for _ in range(300)]
    assert PoissonCusum(5.0, ratio=2.0, threshold=6.0).run(baseline, [1.0] * 300) == []
    jumped = baseline[:50] + [poisson(15.0) for _ in range(10)]
    alarms = PoissonCusum(5.0, ratio=2.0, threshold=6.0).run(jumped, [1.0] * 60)
    assert alarms and 50 <= alarms[0] <= 53
