"""Policy: the Cho & Garcia-Molina worked example, budget properties, cost learning."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from freshness.policy.planner import CostModel, learn_costs
from freshness.policy.reference import mean_objective, optimal_frequencies

RATES = [1, 2, 3, 4, 5]


def test_tods_2003_worked_example():
    optimal = optimal_frequencies(RATES, 5)
    assert optimal == pytest.approx([1.15, 1.36, 1.35, 1.14, 0.0], abs=0.01)
    assert mean_objective(RATES, [1] * 5) == pytest.approx(0.365, abs=5e-4)
    assert mean_objective(RATES, [r / 3 for r in RATES]) == pytest.approx(0.317, abs=5e-4)
    assert mean_objective(RATES, optimal) == pytest.approx(0.374, abs=5e-4)


def test_age_objective_syncs_every_element():
    frequencies = optimal_frequencies(RATES, 5, objective="age")
    assert all(f > 0 for f in frequencies) and sum(frequencies) == pytest.approx(5)
    assert mean_objective(RATES, frequencies, objective="age") <= \
        mean_objective(RATES, [1] * 5, objective="age")


rates = st.lists(st.floats(0.05, 20), min_size=1, max_size=6)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(rates, st.floats(0.5, 50))
def test_budget_is_spent_exactly_and_beats_uniform(change_rates, budget):
    frequencies = optimal_frequencies(change_rates, budget)
    assert sum(frequencies) == pytest.approx(budget, rel=1e-6)
    uniform = [budget / len(change_rates)] * len(change_rates)
    assert mean_objective(change_rates, frequencies) >= \
        mean_objective(change_rates, uniform) - 1e-9


@settings(max_examples=40, deadline=None, derandomize=True)
@given(rates, st.floats(0.5, 50), st.floats(1.01, 4))
def test_more_budget_never_lowers_freshness(change_rates, budget, factor):
    low = mean_objective(change_rates, optimal_frequencies(change_rates, budget))
    high = mean_objective(change_rates, optimal_frequencies(change_rates, budget * factor))
    assert high >= low - 1e-9


def test_costs_are_learned_from_past_runs():
    runs = [(20.0 + 0.01 * n, n) for n in (10, 200, 1000, 5000)]
    learned = learn_costs(runs)
    assert learned.overhead_s == pytest.approx(20.0) and learned.per_chunk_s == \
        pytest.approx(0.01)
    assert learn_costs([]) == CostModel()
