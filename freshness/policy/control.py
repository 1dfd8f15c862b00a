"""The control loop's one decision: re-embed now or wait (pure; sensor, schedule, simulator).

Model (docs/policy.md): a run costs `overhead_s` once, `listing_s` per shard it scans and
`per_chunk_s` per chunk; every pending shard rides along, so the overhead buys a reset of
*everything* pending. While docs wait, stale retrievals accrue at the rate
a(t) = Σ_{pending d} q_d (q_d: the doc's retrieval share), which only grows until the next run.
For a renewal problem whose cost rate grows between resets, the optimal stopping rule is to reset
when the cost rate reaches the optimal average cost g* (monotone stopping: once a(t) ≥ g* it stays
there). So: **run when the pending stale-retrieval rate reaches the threshold θ**; θ is the
smallest value whose replay over the past arrivals of stale mass keeps within the budget, and a
credit (budget accrued over a sliding window minus what runs spent in it) keeps actual spend
within the budget. An SLA makes a shard due whatever the budget (the operator's choice); a shard
never indexed is due as soon as the credit covers the run (a deployment's initial build, with no
shard indexed and nothing spent yet, at once); `min_interval` holds a shard back.

The plan counts each past change at its shard's *mean* retrieval share per doc
(`arrival_mass`, what the sensor's rate history allows), while the decision uses per-doc shares
(it knows which docs are pending now). Under heavy-tailed traffic that makes the plan
conservative: the pending rate is usually below what the means predict, so the loop runs less
often than planned and banks credit, which a later busy stretch spends (docs/policy.md measures
what that costs and gains on each corpus).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from freshness.policy.planner import CostModel

PLAN_WINDOW_DAYS = math.inf  # the recent arrivals the threshold is planned on
PLAN_GRID = 181  # thresholds tried per plan, log-spaced (ratio 1.12 between neighbours)
BUDGET_WINDOW_DAYS = math.inf  # spend is kept within the budget over this window (or longer)
WINDOW_RUNS = 10  # ... long enough to accrue the overhead of this many runs
RESERVE_DAYS = 90.0  # pacing: the credit the loop aims to keep in hand, in days of budget
PACE_LIMIT = 4.0  # ... moving the threshold at most 2^4 either way
START_RUNS = 0  # runs' overhead in hand at the start (0: spend never runs ahead of the budget)
PRIOR_RETRIEVALS = 100.0  # a uniform prior over docs, worth this many logged retrievals


@dataclass(frozen=True)
class LoopConfig:
    """What the operator sets: budget, costs, SLA, min interval, batching."""

    budget_gpu_seconds_per_day: float
    costs: CostModel = CostModel()
    sla_days: float | None = None
    min_interval_days: float = 0.0
    batch: bool = True
    fixed_threshold: float | None = None  # set K by hand (no planning, no pacing)

    def budget_window_days(self) -> float:
        """The window the budget holds over: a month, or long enough for WINDOW_RUNS runs."""
        per_day = max(self.budget_gpu_seconds_per_day, 1e-12)
        return max(BUDGET_WINDOW_DAYS, WINDOW_RUNS * self.costs.overhead_s / per_day)


@dataclass
class LoopInputs:
    """What the loop knows at `now_days` (days since the epoch or since the log's start)."""

    shards: list[str]
    pending_docs: np.ndarray  # per shard
    pending_rate: np.ndarray  # per shard: Σ q_d over pending docs (stale retrievals per unit time)
    oldest_pending_days: np.ndarray  # per shard: time of the oldest pending change, nan if none
    last_run_days: np.ndarray  # per shard: time of its last run, nan if never
    never_indexed: np.ndarray  # per shard: bool, pending docs and no manifest yet
    now_days: float
    start_days: float  # when the budget started to accrue
    run_days: np.ndarray = field(default_factory=lambda: np.zeros(0))  # past runs: when
    run_cost_s: np.ndarray = field(default_factory=lambda: np.zeros(0))  # and what they cost
    arrival_days: np.ndarray = field(default_factory=lambda: np.zeros(0))  # changes seen: when
    arrival_rate: np.ndarray = field(default_factory=lambda: np.zeros(0))  # their arrival_mass
    last_change_days: float | None = None  # the newest source change seen (else: last arrival)


@dataclass(frozen=True)
class LoopPlan:
    """The threshold on the pending stale-retrieval rate, and until when it holds."""

    threshold: float
    runs_budgeted: float
    planned_at_days: float


@dataclass
class LoopDecision:
    run_shards: list[str]
    due: np.ndarray  # per shard: bool
    reasons: list[str]
    plan: LoopPlan
    stale_rate: float  # Σ over eligible pending shards
    credit_s: float
    run_cost_s: float  # what the run (if any) is expected to cost
    next_check_days: float  # the earliest time the answer may change without new changes


def run_cost(config: LoopConfig, pending_docs: np.ndarray, mask: np.ndarray) -> float:
    """Expected GPU seconds of one batched run over the shards in `mask`."""
    costs = config.costs
    if not mask.any():
        return 0.0
    index = np.flatnonzero(mask)
    scanned = index[-1] - index[0] + 1 if config.batch else len(index)  # a partition range
    return costs.run_s(scanned, float(pending_docs[mask].sum()))


def arrival_mass(changed: np.ndarray | float, shard_share: np.ndarray | float,
                 shard_docs: np.ndarray | float) -> np.ndarray | float:
    """The stale rate `changed` changes of a shard add, as the plan counts them: the shard's
    retrieval share spread over its docs (what a change there is worth, on average)."""
    return changed * np.asarray(shard_share, float) / np.maximum(shard_docs, 1)


def pending_share(measured: np.ndarray | float, adds: np.ndarray | float,
                  shard_share: np.ndarray | float, shard_docs: np.ndarray | float
                  ) -> np.ndarray | float:
    """Σ retrieval share of a shard's pending docs when shares are learned from request logs:
    the `measured` shares of the pending docs the index holds (and of deletions), plus its
    `adds`, docs the index does not hold yet: they are in no request log, so nothing was
    measured of them (the traffic file gives them the shard's remainder, the tail the top docs
    leave), and each is worth the shard's mean share per doc, as a change is to the plan
    (`arrival_mass`). Exact shares (the simulator's known popularity) need no such guess."""
    return measured + arrival_mass(adds, shard_share, shard_docs)


def pending_rate(measured: np.ndarray | float, pending_docs: np.ndarray | float,
                 total_docs: float, retrievals: float | None = None) -> np.ndarray | float:
    """The stale rate the loop counts for pending docs: their measured retrieval share (Σ q_d)
    shrunk towards a uniform share per doc over the corpus's `total_docs`, by a prior worth
    PRIOR_RETRIEVALS retrievals against the `retrievals` the shares were measured on (None:
    exact shares, no prior). Docs nobody retrieved yet keep a little weight, so their shards
    refresh; with plenty of request logs the measured shares decide."""
    mix = 0.0 if retrievals is None else PRIOR_RETRIEVALS / (retrievals + PRIOR_RETRIEVALS)
    uniform = np.asarray(pending_docs, float) / max(total_docs, 1.0)
    return (1 - mix) * np.asarray(measured, float) + mix * uniform


def credit(config: LoopConfig, inputs: LoopInputs) -> float:
    """GPU seconds the loop may still spend: budget accrued over the window, minus spend in it."""
    if math.isinf(config.budget_gpu_seconds_per_day):  # no budget (a knob set by hand)
        return math.inf
    window = config.budget_window_days()
    since = max(inputs.now_days - window, inputs.start_days)
    spent = float(inputs.run_cost_s[inputs.run_days >= since].sum())
    return config.budget_gpu_seconds_per_day * (inputs.now_days - since) - spent + \
        START_RUNS * config.costs.overhead_s


def replay_runs(days: np.ndarray, rate: np.ndarray, until: float,
                thresholds: np.ndarray) -> np.ndarray:
    """Runs the rule would have made on these arrivals (event times, stale rate added), for
    each threshold at once: the pending rate a resets at each run, which happens when
    a × (time since the last arrival) reaches the threshold."""
    a = np.zeros(len(thresholds))
    runs = np.zeros(len(thresholds))
    last = days[0] if len(days) else until
    for t, m in zip(np.append(days, until).tolist(), np.append(rate, 0.0).tolist()):
        fired = (a > 0) & (last + thresholds / np.where(a > 0, a, 1.0) <= t)
        runs += fired
        a = np.where(fired, 0.0, a) + m
        last = t
    return runs


def plan_threshold(config: LoopConfig, inputs: LoopInputs) -> LoopPlan:
    """The smallest threshold whose replay over the recent arrivals stays within the budget."""
    now = inputs.now_days
    since = max(now - PLAN_WINDOW_DAYS, inputs.start_days)
    recent = (inputs.arrival_days > since) & (inputs.arrival_days <= now)
    days, costs = max(now - since, 1e-9), config.costs
    fixed = costs.run_s(max(1, int(_listed(inputs).sum())) / 2, 0)  # a typical run: half
    # what the budget allowed over the window, plus the credit unspent beyond a reserve of
    # RESERVE_RUNS runs (so a run the rule wants is rarely held back for want of credit)
    budgeted = (config.budget_gpu_seconds_per_day * days + START_RUNS * costs.overhead_s
                - costs.per_doc_s * int(recent.sum())) / fixed
    if budgeted < 1:
        return LoopPlan(math.inf, budgeted, now)
    if not recent.any():
        return LoopPlan(0.0, budgeted, now)
    times, first = np.unique(inputs.arrival_days[recent], return_index=True)
    mass = np.add.reduceat(inputs.arrival_rate[recent], first)
    top = float(mass.sum()) * days
    grid = top * np.logspace(-9, 0, PLAN_GRID)
    runs = replay_runs(times, mass, now, grid)
    fits = np.flatnonzero(runs <= budgeted)
    return LoopPlan(float(grid[fits[0]]) if len(fits) else top, budgeted, now)


def paced(config: LoopConfig, plan: LoopPlan, available: float) -> LoopPlan:
    """Budget pacing on the credit a run would leave (`available`): the threshold doubles for
    every reserve's worth below the reserve (and halves for every reserve above it), so quiet
    stretches bank credit that busy ones spend, and a burst finds credit in hand."""
    reserve = max(RESERVE_DAYS * config.budget_gpu_seconds_per_day, 2 * config.costs.overhead_s)
    factor = 2.0 ** float(np.clip((reserve - available) / reserve, -PACE_LIMIT, PACE_LIMIT))
    return LoopPlan(plan.threshold * factor, plan.runs_budgeted, plan.planned_at_days)


def decide(config: LoopConfig, inputs: LoopInputs, plan: LoopPlan | None = None
           ) -> LoopDecision:
    """Which shards to re-embed now. Pass `plan` to reuse a threshold planned earlier."""
    now = inputs.now_days
    available = credit(config, inputs)
    if config.fixed_threshold is not None:
        plan = LoopPlan(config.fixed_threshold, math.inf, now)
    plan = plan or plan_threshold(config, inputs)
    eligible_now = (inputs.pending_docs > 0) & ~((now - inputs.last_run_days
                                                  < config.min_interval_days)
                                                 & (config.min_interval_days > 0))
    if config.fixed_threshold is None:
        plan = paced(config, plan, available - run_cost(config, inputs.pending_docs,
                                                        eligible_now))
    pending = inputs.pending_docs > 0
    since_run = now - inputs.last_run_days
    held = pending & (since_run < config.min_interval_days) if config.min_interval_days > 0 \
        else np.zeros_like(pending)  # nan compares False: a shard that never ran is not held
    eligible = pending & ~held
    age = now - inputs.oldest_pending_days
    sla = eligible & (age >= config.sla_days) if config.sla_days else np.zeros_like(pending)
    rate = float(inputs.pending_rate[eligible].sum())
    each = config.costs.run_s(1, inputs.pending_docs)  # per shard, run on its own
    batched = run_cost(config, inputs.pending_docs, eligible)  # every eligible shard at once
    build = np.full(len(pending), batched) if config.batch else each
    # a new shard jumps the threshold, not the budget; a deployment's initial build (nothing
    # indexed or spent yet) has no budget to wait for
    new = eligible & inputs.never_indexed
    initial = bool(inputs.never_indexed[_listed(inputs)].all()) and not len(inputs.run_days)
    first = new & ((available >= build) | initial)
    waiting_first = new & ~first
    if config.batch:
        cost = batched
        by_rate = np.full(len(pending), _score(rate, inputs) >= plan.threshold * (1 - 1e-9)
                          and rate > 0 and available >= cost) & eligible
    else:
        quiet = max(now - _last_arrival(inputs), 0.0)
        by_rate = eligible & (inputs.pending_rate * quiet >= plan.threshold) & \
            (np.cumsum(np.where(eligible, each, 0.0)) <= available)
        cost = float(each[by_rate | sla | first].sum())
    due = sla | first | by_rate
    run = (eligible if config.batch else due) if due.any() else np.zeros_like(due)
    if config.batch and due.any():
        cost = run_cost(config, inputs.pending_docs, run)
    reasons = [
        "no pending changes" if not p else
        "min_interval not reached" if h else
        "not indexed yet" if f else
        "not indexed yet: waiting for the budget's credit" if w else
        "SLA reached" if s else
        "stale-retrieval rate reached the threshold" if b else
        "rides along in a batched run" if r else
        "waiting: rate below the threshold or budget spent"
        for p, h, f, w, s, b, r in zip(pending, held, first, waiting_first, sla, by_rate, run)]
    return LoopDecision([n for n, r in zip(inputs.shards, run) if r], due, reasons, plan, rate,
                        available, cost if run.any() else 0.0,
                        _next_check(config, inputs, plan, rate, available, eligible, held,
                                    cost, run.any(), float(build[waiting_first].min())
                                    if waiting_first.any() else math.inf))


def _listed(inputs: LoopInputs) -> np.ndarray:
    """The shards the source lists: all but those with no index and nothing pending (in a
    replay, shards not added yet or removed whole)."""
    return ~(inputs.never_indexed & (inputs.pending_docs == 0))


def _last_arrival(inputs: LoopInputs) -> float:
    if inputs.last_change_days is not None:
        return inputs.last_change_days
    return float(inputs.arrival_days[-1]) if len(inputs.arrival_days) else inputs.start_days


def _score(rate: float, inputs: LoopInputs) -> float:
    """Stale retrievals that waiting would cost, by the time already quiet: rate × quiet."""
    return rate * max(inputs.now_days - _last_arrival(inputs), 0.0) if rate > 0 else 0.0


def _next_check(config: LoopConfig, inputs: LoopInputs, plan: LoopPlan, rate: float,
                available: float, eligible: np.ndarray, held: np.ndarray, cost: float,
                running: bool, first_build: float) -> float:
    """When the decision may change with no new change: an SLA deadline, a min-interval expiry,
    or enough credit for a run that the rate already justifies or a new shard's first build."""
    now, times = inputs.now_days, [math.inf]
    if running:
        return now
    if config.sla_days and eligible.any():
        times.append(float(np.nanmin(inputs.oldest_pending_days[eligible])) + config.sla_days)
    if held.any():
        times.append(float(np.nanmin(inputs.last_run_days[held])) + config.min_interval_days)
    justified = _score(rate, inputs) >= plan.threshold * (1 - 1e-9)
    if rate > 0 and eligible.any() and math.isfinite(plan.threshold) and not justified:
        times.append(_last_arrival(inputs) + plan.threshold / rate * (1 + 1e-9))
    if eligible.any() and justified and available < cost:
        times.append(_credit_covers(config, now, available, cost))
    if math.isfinite(first_build):  # a new shard's first build
        times.append(_credit_covers(config, now, available, first_build))
    return max(min(times), now)


def _credit_covers(config: LoopConfig, now: float, available: float, cost: float) -> float:
    """When the budget accruing from `now` lifts the credit to `cost` (never with no budget)."""
    per_day = config.budget_gpu_seconds_per_day
    return now + (cost - available) / per_day * (1 + 1e-9) if per_day > 0 else math.inf
