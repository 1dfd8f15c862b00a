"""Freshness simulator: replay a change log through a re-embedding policy under a GPU budget.

Nothing is embedded. The production cost model: a run pays the overhead once, a listing per shard
in its partition range and a per-chunk cost per pending doc; every pending shard rides along
(one batched run), and a run with nothing pending is skipped. Retrieval-weighted freshness is exact
for an infinite query stream: each doc is retrieved at a rate proportional to its popularity (Zipf
over a seeded random ranking by default) while it exists in the source or the index, and a
retrieval is stale while the doc's latest change is not embedded (edits, additions not indexed
yet, deletions still served).

Policies produce run schedules, and one vectorised `evaluate` (policy/replay.py) scores every
schedule:
- `adaptive` is the production loop: `freshness.policy.control.decide` called after every change
  (and when it asks to be woken), with causal inputs only — the budget as given, arrivals seen so
  far, and per-doc traffic in the bounded form recency writes (`freshness.state.traffic`);
- `adaptive-hindsight`: the production loop with K given (by hindsight: adaptive-fixed's K) and
  the budget's credit and pacing on — what the loop would do if its plan were perfect;
- `uniform` (one batched run every T), `proportional` (each shard's clock ∝ its change rate, the
  run batched), `threshold` (a batched run when N docs are pending) — each calibrated with
  hindsight to spend as much of the budget as it can (policy/baselines.py);
- `uniform-paced` and `threshold-paced`: the same rules as one could deploy them instead of the
  adaptive loop — the budget as given, no hindsight: the loop with K = 0 (a run of everything
  pending whenever the credit covers one), and N pending docs with N planned on the changes seen
  so far and the same credit;
- `oracle`: clairvoyant (knows every future change and query), the best batched schedule for its
  spend (dynamic programming over change instants with a Lagrange multiplier on the budget;
  policy/oracle.py);
- `foresight`: adaptive-fixed told the one thing a causal loop cannot know, when the next change
  lands (not what it is): decided at each change instant, it runs when a(t) × (time to the next
  change) reaches K, K calibrated in hindsight — what the wait for the source to fall quiet
  costs the loop's rule, between adaptive-fixed and the oracle;
- `immediate`: a run after every change (the ceiling).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from freshness.policy.baselines import (
    immediate,
    proportional,
    threshold,
    threshold_paced,
    uniform,
)
from freshness.policy.control import (
    LoopConfig,
    LoopInputs,
    LoopPlan,
    arrival_mass,
    decide,
    pending_rate,
    pending_share,
    plan_threshold,
)
from freshness.policy.costs import learned_costs
from freshness.policy.learned_traffic import LearnedShares
from freshness.policy.oracle import oracle
from freshness.policy.planner import CostModel
from freshness.policy.replay import ChangeLog, SimResult, evaluate
from freshness.state.traffic import TOP_K
from freshness.util.timeutil import DAY_S

__all__ = ["BASELINES", "DEPLOYABLE", "POLICIES", "ChangeLog", "SimResult", "adaptive", "calibrate",
           "compare", "evaluate", "simulate"]

POLICIES = ("adaptive", "adaptive-hindsight", "adaptive-fixed", "uniform", "proportional",
            "threshold", "uniform-paced", "threshold-paced", "oracle", "foresight", "immediate")
BASELINES = ("uniform", "proportional", "threshold")  # knobs calibrated with hindsight
DEPLOYABLE = ("uniform-paced", "threshold-paced")  # as one could deploy them: the budget as given
GIVEN_BUDGET = ("adaptive", "oracle", "immediate", *DEPLOYABLE)  # no knob to calibrate
REPLAN_DAYS = 7.0


# ---- the production loop ---------------------------------------------------------------------

def adaptive(log: ChangeLog, config: LoopConfig, poll_times: np.ndarray | None = None,
             replan_days: float = REPLAN_DAYS, top_k: int = TOP_K,
             planner: Callable[[LoopConfig, LoopInputs], LoopPlan] = plan_threshold,
             realized: Sequence[dict] | None = None, learned: LearnedShares | None = None,
             foresight: bool = False) -> tuple[np.ndarray, list[np.ndarray]]:
    """Replay the log through `control.decide`, as the sensor calls it: after each change and
    whenever the decision asks to be woken, or only at `poll_times` (seconds) when given. Each
    poll records, as the sensor's rate history does, the docs added or modified since the
    previous poll that exist now, stamped with the poll's time.

    Runs cost what the cost model predicts, unless `realized` gives what a deployment's runs
    cost (its run records, `cost` and `chunks_embedded`, in order; those with `day` ≤ the first
    poll, in days since the log's start, ran before the replay): then the k-th run of the replay
    charges the k-th later record that names shards (one naming none, a shard's retirement, is
    counted when the replay reaches its day), and every decision learns its cost model from the
    records before it, as the sensor does (`costs.learned_costs`).

    The loop knows the log's popularity exactly (in the bounded form recency writes), unless
    `learned` gives the shares a deployment would learn from a sampled query stream (refreshed
    at each day's end, the loop woken then); the schedule is scored on the popularity alike.

    `foresight` (a reference, not a deployable loop): decided only at the change instants, the
    loop takes the time to the *next* change for the quiet time, so the rule a × quiet ≥ K
    reads a × (time until the source changes again) ≥ K: it runs at the instant a change lands
    when nothing follows soon, where the causal loop waits to see the source fall quiet."""
    q = log.known_traffic(top_k) if learned is None else learned.q
    shards = len(log.shard_names)
    pending = np.zeros(len(q), bool)
    pending_list: list[list[int]] = [[] for _ in range(shards)]
    count = np.zeros(shards)
    rate = np.zeros(shards)  # per shard: Σ q_d of its pending docs (learned: but the adds)
    adds = np.zeros(shards)  # learned shares: its pending docs the index does not hold yet
    learn_adds = learned is not None
    oldest = np.full(shards, np.nan)
    last_run = np.full(shards, np.nan)
    arrivals_t = np.zeros(len(log.times))
    arrivals_m = np.zeros(len(log.times))  # each worth its shard's mean share at the poll
    arrivals_s = np.zeros(len(log.times), np.int64)  # (learned shares: its shard, its docs
    arrivals_d = np.zeros(len(log.times))  # then, and the share recorded, nan if the traffic
    arrivals_r = np.zeros(len(log.times))  # file did not have the shard)
    alive = np.zeros(len(q), bool)
    alive[log.initial_docs] = True
    indexed = alive.copy()  # what queries can retrieve (and request logs show)
    docs_now = np.bincount(log.doc_shard[log.initial_docs], minlength=shards).astype(float)
    # per shard, its retrieval share as recency measures it now: its existing docs' shares
    share = np.bincount(log.doc_shard[log.initial_docs], weights=q[log.initial_docs],
                        minlength=shards) if learned is None else learned.shard_share
    deletes = log.deletes.tolist()
    n_arrivals = 0
    touched: set[int] = set()  # docs changed since the previous poll
    run_t, run_c, run_shards, ran_at = [], [], [], []  # spend (credit), and the runs made
    if len(log.initial_docs):  # the snapshot was built before the log (not charged to it)
        run_t.append(0.0)
        run_c.append(0.0)
    times, offsets = log.events()
    if foresight:
        poll_times = times
    polls = times / DAY_S if poll_times is None else np.sort(poll_times) / DAY_S
    records: list[dict] = []  # the realized run records the decisions have seen
    upcoming = list(realized or [])
    if realized is not None:
        while upcoming and upcoming[0]["day"] <= polls[0]:
            _charge(upcoming.pop(0), records, run_t, run_c)
    change_days = times / DAY_S
    # a shard the source adds later has no index yet (the sensor: manifest version 0), so its
    # first build jumps the threshold once the credit covers it
    never = docs_now == 0
    gone_t, gone_s = log.vanishings()
    gone_days, gone, g = gone_t / DAY_S, gone_s.tolist(), 0
    plan: LoopPlan | None = None
    e, p, wake = 0, 0, math.inf
    seen = np.full(shards, np.nan)  # per shard, its newest change (detection's last seen)
    docs, doc_shard = log.docs.tolist(), log.shards.tolist()
    end = log.horizon / DAY_S
    while True:
        poll = polls[p] if p < len(polls) else math.inf
        now = min(poll, wake)
        if now > end or math.isinf(now):
            break
        while e < len(change_days) and change_days[e] <= now:  # the source moved: detection
            for c in range(offsets[e], offsets[e + 1]):
                d = docs[c]
                touched.add(d)
                s = doc_shard[c]
                was_add = pending[d] and learn_adds and alive[d] and not indexed[d]
                if alive[d] == deletes[c]:  # an add or a delete: the shard's doc count moves
                    alive[d] = not deletes[c]
                    docs_now[s] += -1 if deletes[c] else 1
                    if learned is None:  # (learned: the traffic file moves at the day's end)
                        share[s] += -q[d] if deletes[c] else q[d]
                is_add = learn_adds and alive[d] and not indexed[d]
                if not pending[d]:
                    pending[d] = True
                    pending_list[s].append(d)
                    count[s] += 1
                    if is_add:
                        adds[s] += 1
                    else:
                        rate[s] += q[d]
                    if not oldest[s] <= change_days[e]:
                        oldest[s] = change_days[e]
                elif was_add != is_add:  # a pending add deleted, or re-added
                    adds[s] += 1 if is_add else -1
                    rate[s] = max(rate[s] + (-q[d] if is_add else q[d]), 0.0)
                seen[s] = change_days[e]  # the source's own time (its updated_at)
            e += 1
        while g < len(gone) and gone_days[g] <= now:  # the sensor retires a shard gone whole
            s = gone[g]  # (outside the budget): nothing of it is pending, and if it comes
            for d in pending_list[s]:  # back it is a new shard (no index yet)
                pending[d] = False
            pending_list[s] = []
            indexed[log.doc_shard == s] = False
            count[s], rate[s], adds[s], oldest[s], seen[s], never[s] = \
                0, 0.0, 0, np.nan, np.nan, True
            g += 1
        if now == poll:
            p += 1
        while upcoming and not upcoming[0].get("shards") and upcoming[0]["day"] <= now:
            _charge(upcoming.pop(0), records, run_t, run_c)  # a retirement: no loop run
        if learned is not None and learned.advance(math.floor(now), indexed, alive):  # a day ended
            q, share = learned.q, learned.shard_share
            add = pending & alive & ~indexed
            held = pending & ~add
            rate = np.bincount(log.doc_shard[held], weights=q[held],  # (float even
                               minlength=shards).astype(float)  # with nothing pending)
            adds = np.bincount(log.doc_shard[add], minlength=shards).astype(float)
        known = learned.known() if learned is not None and touched else None
        for d in sorted(touched):  # what the poll's rate history row counts, and records
            if alive[d]:
                s = log.doc_shard[d]
                arrivals_t[n_arrivals] = now
                arrivals_m[n_arrivals] = arrival_mass(1.0, share[s], docs_now[s])
                arrivals_s[n_arrivals], arrivals_d[n_arrivals] = s, docs_now[s]
                arrivals_r[n_arrivals] = share[s] if known is None or known[s] else np.nan
                n_arrivals += 1
        touched.clear()
        total_docs = float(docs_now[docs_now > 0].sum()) or 1.0  # the shards listed now
        # exact shares (an unbounded query stream) mix in no prior; learned ones do
        measured = rate if learned is None else pending_share(rate, adds, share, docs_now)
        weighed = pending_rate(measured, count, total_docs,
                               None if learned is None else learned.retrievals)
        # the quiet time runs from the newest change of a shard the source lists
        last_change = float(np.nanmax(seen)) if not np.isnan(seen).all() else None
        if foresight:  # as if the source had been quiet as long as it will stay quiet
            upcoming_change = change_days[e] if e < len(change_days) else math.inf
            last_change = 2 * now - upcoming_change
        inputs = LoopInputs(log.shard_names, count, weighed, oldest, last_run, never, now, 0.0,
                            np.array(run_t), np.array(run_c), arrivals_t[:n_arrivals],
                            arrivals_m[:n_arrivals], last_change)
        tick = config if realized is None else replace(
            config, costs=learned_costs(records, config.costs))
        if config.fixed_threshold is None and (plan is None
                                               or now - plan.planned_at_days >= replan_days):
            if learned is not None:  # the rate history as the sensor weighs it (`cadence`);
                arrivals_m[:n_arrivals] = _learned_arrivals(  # only the plan reads it
                    learned, arrivals_s[:n_arrivals], arrivals_d[:n_arrivals],
                    arrivals_r[:n_arrivals], total_docs)
            plan = planner(tick, inputs)
        decision = decide(tick, inputs, plan)
        # woken when the decision may change (a sensor ticking every few seconds), or at the
        # given poll times only
        wake = decision.next_check_days if decision.next_check_days > now and \
            poll_times is None else math.inf
        if learned is not None and poll_times is None:  # the traffic file moves at each day's end
            wake = min(wake, math.floor(now) + 1.0)
        if decision.run_shards:
            ran = np.flatnonzero(np.isin(log.shard_names, decision.run_shards))
            if realized is None:
                run_t.append(now)
                run_c.append(decision.run_cost_s)
            else:  # the next record of a loop's run (one naming shards)
                k = next((k for k, r in enumerate(upcoming) if r.get("shards")), None)
                if k is None:
                    raise ValueError("the replay makes more runs than `realized` records")
                _charge({**upcoming.pop(k), "day": now}, records, run_t, run_c)
            ran_at.append(_seconds(now, times, change_days, e))
            run_shards.append(ran)
            for s in ran:
                for d in pending_list[s]:
                    pending[d] = False
                    indexed[d] = alive[d]
                pending_list[s] = []
            count[ran], rate[ran], adds[ran], oldest[ran], last_run[ran] = 0, 0.0, 0, np.nan, now
            never[ran] = False
            wake = now  # decide again: shards held back by min_interval may wait on a deadline
    return np.array(ran_at), run_shards


def _seconds(now: float, times: np.ndarray, change_days: np.ndarray, applied: int) -> float:
    """A run's time in seconds: the change instant it was decided at exactly (days × DAY_S can
    land an ulp before it, and the evaluator would not count that instant's changes as
    embedded), else the decision's time, never before a change the run embeds."""
    if not applied:
        return now * DAY_S
    last = float(times[applied - 1])
    return last if now == change_days[applied - 1] else max(now * DAY_S, last)


def _learned_arrivals(learned: LearnedShares, shard: np.ndarray, docs: np.ndarray,
                      recorded: np.ndarray, total_docs: float) -> np.ndarray:
    """What each arrival is worth to the plan when shares are learned, as `cadence._arrivals`
    weighs the rate history: the shard's share recorded with the poll, else its share now; with
    no traffic file yet, every doc of the corpus the same."""
    if not learned.retrievals:
        return arrival_mass(1.0, np.maximum(docs, 1) / total_docs, docs)
    share = np.where(np.isnan(recorded), learned.shard_share[shard], recorded)
    return arrival_mass(1.0, share, docs)


def _charge(record: dict, records: list[dict], run_t: list[float], run_c: list[float]) -> None:
    """Count a realized run record: in the cost learning, and in the spend if it embedded."""
    records.append(record)
    if record.get("chunks_embedded"):  # what the sensor counts as spent
        run_t.append(record["day"])
        run_c.append(float(record["cost"]))


# ---- running and calibrating -----------------------------------------------------------------

_SCHEDULES: dict[str, Callable] = {"uniform": uniform, "proportional": proportional,
                                   "threshold": threshold}


def simulate(log: ChangeLog, policy: str, parameter: float, costs: CostModel,
             budget: float | None = None, config: LoopConfig | None = None,
             poll_times: np.ndarray | None = None, retrievals_per_day: float | None = None,
             query_seed: int = 0) -> SimResult:
    """One policy over the whole log. `parameter`: uniform/proportional → interval days,
    threshold → pending docs, adaptive/oracle/uniform-paced/threshold-paced → GPU seconds per
    day, adaptive-fixed/adaptive-hindsight/foresight → the loop's threshold K; immediate ignores
    it.
    `retrievals_per_day`: the loops that weigh docs by traffic (adaptive, adaptive-fixed,
    adaptive-hindsight, foresight) learn the shares from a query stream of that size (seeded by
    `query_seed`), as a deployment does, instead of knowing them."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}: use one of {', '.join(POLICIES)}")
    if policy == "oracle":
        return oracle(log, parameter, costs)
    learned = None if retrievals_per_day is None else \
        LearnedShares(log, retrievals_per_day, query_seed)
    if policy == "immediate":
        times, shards = immediate(log)
    elif policy == "adaptive":
        config = config or LoopConfig(parameter, costs)
        times, shards = adaptive(log, config, poll_times, learned=learned)
    elif policy in ("adaptive-fixed", "foresight"):
        # the same loop with its threshold K set by hand (foresight: told when the next change
        # lands)
        config = config or LoopConfig(math.inf, costs, fixed_threshold=parameter)
        times, shards = adaptive(log, config, poll_times, learned=learned,
                                 foresight=policy == "foresight")
    elif policy == "adaptive-hindsight":  # K given (by hindsight), the budget's credit on
        config = config or LoopConfig(budget if budget is not None else math.inf, costs)
        times, shards = adaptive(log, config, poll_times, planner=lambda _, inputs: LoopPlan(
            parameter, math.inf, inputs.now_days), learned=learned)
    elif policy == "uniform-paced":  # the same loop with K = 0: a run whenever the credit allows
        times, shards = adaptive(log, LoopConfig(parameter, costs, fixed_threshold=0.0),
                                 poll_times)
    elif policy == "threshold-paced":
        times, shards = threshold_paced(log, parameter, costs)
    else:
        times, shards = _SCHEDULES[policy](log, parameter)
    return evaluate(log, times, shards, costs, policy, parameter, budget)


def calibrate(log: ChangeLog, policy: str, budget: float, costs: CostModel,
              iterations: int = 22, **learning) -> SimResult:
    """For a baseline, the knob that spends as much of `budget` (GPU s/day) as it can, not more
    (hindsight). Adaptive and oracle take the budget as it is. `learning`: `simulate`'s
    retrievals_per_day and query_seed."""
    if policy in GIVEN_BUDGET:
        return simulate(log, policy, budget, costs, budget, **learning)
    if policy == "threshold":
        low, high = 1.0, float(len(log.times)) + 1
    elif policy in ("adaptive-fixed", "adaptive-hindsight", "foresight"):  # K: share × days
        low, high = 1e-9, 10.0
    else:  # interval days: spend falls as the interval grows
        low, high = 1e-4, 4 * log.horizon / DAY_S
    best: SimResult | None = None
    for _ in range(iterations):
        mid = math.sqrt(low * high)
        if policy == "threshold":
            mid = float(max(1, round(mid)))
        result = simulate(log, policy, mid, costs, budget, **learning)
        fits = result.gpu_seconds_per_day <= budget
        if fits and (best is None or result.stale_share < best.stale_share):
            best = result
        low, high = (low, mid) if fits else (mid, high)  # spend falls as the knob grows
        if policy == "threshold" and high - low <= 1:
            break
    if best is None:  # even the thriftiest setting overspends: report it, marked
        best = simulate(log, policy, high, costs, budget, **learning)
    return best


def compare(log: ChangeLog, budgets: list[float], costs: CostModel,
            policies: tuple[str, ...] = POLICIES) -> list[dict]:
    """Every policy at every budget, baselines calibrated to spend no more than the budget."""
    rows = []
    for budget in budgets:
        for policy in policies:
            if policy != "immediate":
                rows.append(calibrate(log, policy, budget, costs).as_dict())
    if "immediate" in policies:
        rows.append(simulate(log, "immediate", 0.0, costs).as_dict())
    return rows
