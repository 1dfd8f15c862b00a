"""Which shards to re-embed now: the staleness-debt policy applied to detection results."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from freshness.pipeline.detect import PendingSummary
from freshness.policy.costs import learned_costs
from freshness.policy.planner import BudgetController, CostModel, Plan, ShardModel, is_due, plan
from freshness.state import layout
from freshness.state.runs import load_runs, spent_seconds
from freshness.state.store import StateStore
from freshness.util.rates import gamma_posterior_rate
from freshness.util.timeutil import DAY_S

PRIOR_MIX = 0.1  # a shard nobody queried yet still gets a little weight, so it is refreshed


@dataclass(frozen=True)
class ShardVerdict:
    """Why a shard is (not) in this tick's run."""

    shard: str
    due: bool
    reason: str
    debt: float
    pending_docs: int
    pending_age_days: float | None
    query_share: float
    rate_per_doc_day: float


@dataclass
class CadenceDecision:
    plan: Plan
    verdicts: list[ShardVerdict]
    run_shards: list[str]  # due shards plus, when batching, every shard with pending changes
    costs: CostModel


def traffic_shares(store: StateStore) -> dict[str, float] | None:
    """Per-shard retrieval shares written by the recency computation, if any."""
    raw = store.read_bytes(*layout.TRAFFIC_FILE)
    return json.loads(raw) if raw else None


def decide(summaries: Sequence[PendingSummary], now: datetime, budget_gpu_seconds_per_day: float,
           store: StateStore, default_costs: CostModel = CostModel(),
           sla_days: float | None = None, min_interval_days: float = 0.0,
           last_run: dict[str, datetime] | None = None, batch: bool = True) -> CadenceDecision:
    """Plan the debt threshold for the budget and mark the shards whose debt reached it."""
    shares = traffic_shares(store) or {}
    total_docs = sum(s.docs for s in summaries) or 1
    models, by_shard = [], {}
    for s in summaries:
        prior = s.docs / total_docs  # uniform per doc when no request logs are known
        share = (1 - PRIOR_MIX) * shares.get(s.shard, 0.0) + PRIOR_MIX * prior if shares \
            else prior
        rate = s.rate_per_doc_day if s.rate_per_doc_day is not None else \
            gamma_posterior_rate(0, max(s.docs, 1) * 30.0)
        models.append(ShardModel(s.shard, max(s.docs, 1), rate, share, sla_days=sla_days,
                                 min_interval_days=min_interval_days))
        by_shard[s.shard] = (s, share, rate)
    runs = load_runs(store)  # read once: costs and the last day's spend both come from it
    costs = learned_costs(runs, default_costs)
    current = plan(models, costs, budget_gpu_seconds_per_day)
    spent = spent_seconds(runs, now - timedelta(days=1))
    if spent:  # measured spend corrects the model's threshold (BudgetController)
        current.debt_threshold = BudgetController(
            current.debt_threshold, budget_gpu_seconds_per_day).update(spent, 1.0)
    share_total = sum(m.query_weight for m in models) or 1.0
    verdicts = []
    for shard, (summary, share, rate) in by_shard.items():
        share /= share_total
        debt = share / max(summary.docs, 1) * summary.pending_doc_days(now)
        age = None if summary.oldest_pending_change is None else \
            (now - summary.oldest_pending_change).total_seconds() / DAY_S
        since_run = None if not last_run or shard not in last_run else \
            (now - last_run[shard]).total_seconds() / DAY_S
        due = is_due(debt, current.debt_threshold, age, sla_days, since_run, min_interval_days)
        first_build = summary.manifest_version == 0 and summary.pending_docs > 0
        due = due or first_build
        reason = ("no pending changes" if age is None else
                  "not indexed yet" if first_build else
                  "SLA reached" if due and sla_days and age >= sla_days else
                  "staleness debt reached the threshold" if due else "debt below threshold")
        verdicts.append(ShardVerdict(shard, due, reason, debt, summary.pending_docs, age, share,
                                     rate))
    due = [v.shard for v in verdicts if v.due]
    if due and batch:  # the run's overhead is paid once: bring every pending shard along
        due = [v.shard for v in verdicts if v.pending_docs]
    return CadenceDecision(current, verdicts, due, costs)
