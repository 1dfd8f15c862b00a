"""Policy: the Cho & Garcia-Molina worked example, budget properties, SLAs, cost learning."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from freshness.policy.planner import (
    CostModel,
    ShardModel,
    is_due,
    learn_costs,
    plan,
    staleness_debt,
)
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


shards = st.lists(st.tuples(st.integers(1, 5000), st.floats(1e-4, 0.05), st.floats(0.01, 1)),
                  min_size=1, max_size=6)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(shards, st.floats(0.5, 200), st.floats(1.1, 5))
def test_debt_plan_meets_the_budget_and_improves_with_it(specs, budget, factor):
    models = [ShardModel(f"s{i}", n, r, w) for i, (n, r, w) in enumerate(specs)]
    tight = plan(models, CostModel(), budget)
    loose = plan(models, CostModel(), budget * factor)
    assert tight.gpu_seconds_per_day <= budget * (1 + 1e-6) or tight.over_budget
    assert loose.weighted_freshness >= tight.weighted_freshness - 1e-6


def test_sla_bounds_the_wait_even_on_a_tiny_budget():
    models = [ShardModel("hot", 1000, 0.01, 0.9), ShardModel("cold", 50, 0.001, 0.1,
                                                               sla_days=2.0)]
    result = plan(models, CostModel(), 0.01)
    assert result.decisions["cold"].delay_days <= 2.0
    assert result.over_budget and result.notes


def test_debt_rule_and_sla():
    debt = staleness_debt([0.0, 1.0], [0.5, 0.5], now_days=2.0)
    assert debt == pytest.approx(1.5)
    assert is_due(debt, 1.0, pending_age_days=2.0)
    assert not is_due(debt, 2.0, pending_age_days=2.0)
    assert is_due(debt, 2.0, pending_age_days=2.0, sla_days=1.0)
    assert not is_due(debt, 1.0, pending_age_days=2.0, days_since_last_run=0.01,
                      min_interval_days=0.1)
    assert not is_due(0.0, 0.0, pending_age_days=None)


def test_costs_are_learned_from_past_runs():
    runs = [(20.0 + 0.01 * n, n) for n in (10, 200, 1000, 5000)]
    learned = learn_costs(runs)
    assert learned.overhead_s == pytest.approx(20.0) and learned.per_chunk_s == \
        pytest.approx(0.01)
    assert learn_costs([]) == CostModel()
