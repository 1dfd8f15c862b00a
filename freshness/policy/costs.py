"""Run costs learned from the run records (overhead + per-chunk seconds)."""

from __future__ import annotations

from freshness.policy.planner import CostModel, learn_costs
from freshness.state.runs import run_cost_of


def learned_costs(runs: list[dict], default: CostModel) -> CostModel:
    """Overhead and per-chunk seconds fitted to the runs (from `load_runs`) that embedded."""
    fitted = [(run_cost_of(r), r["chunks_embedded"]) for r in runs  # in the runs' cost unit
              if r.get("chunks_embedded")]
    return learn_costs(fitted, default) if fitted else default
