"""The deployed control loop: detection results and state in, `control.decide` out.

The sensor (and the optional sweep schedule) call `observe` then `decide`; the simulator calls
`control.decide` with the same kind of inputs built from a change log. This module only turns the
state (pending docs, traffic, run records, rate history) into `LoopInputs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow.compute as pc

from freshness.pipeline.detect import PendingSummary, detect_shard_or_none
from freshness.policy.control import (
    LoopConfig,
    LoopDecision,
    LoopInputs,
    arrival_mass,
    pending_rate,
    pending_share,
)
from freshness.policy.control import decide as loop_decide
from freshness.policy.costs import learned_costs
from freshness.policy.planner import CostModel
from freshness.runtime import Runtime
from freshness.state.manifest import ShardStateStore
from freshness.state.rate_history import RateHistory
from freshness.state.runs import load_runs, run_cost_of
from freshness.state.store import StateStore
from freshness.state.traffic import Traffic, read_traffic, traffic_shares
from freshness.util.timeutil import DAY_S as DAY
from freshness.util.timeutil import as_utc

__all__ = ["CadenceDecision", "ShardVerdict", "decide", "decide_for", "observe",
           "traffic_shares"]


@dataclass(frozen=True)
class ShardVerdict:
    """Why a shard is (not) in this tick's run."""

    shard: str
    due: bool
    reason: str
    stale_rate: float  # Σ retrieval share of its pending docs
    pending_docs: int
    pending_age_days: float | None
    query_share: float
    rate_per_doc_day: float | None


@dataclass
class CadenceDecision:
    loop: LoopDecision
    verdicts: list[ShardVerdict]
    run_shards: list[str]
    costs: CostModel
    inputs: LoopInputs  # what the loop was given (the simulator builds the same from a log)


def observe(rt: Runtime, tokens: dict[str, str], known_tokens: dict[str, str],
            pending: Sequence[str]) -> tuple[list[PendingSummary], list[str]]:
    """Fresh detection for shards whose change token moved or that had pending changes; the
    last recorded summary for the rest (unchanged and fully embedded)."""
    moved = [s for s, t in tokens.items() if known_tokens.get(s) != t]
    scan = sorted(set(moved) | (set(pending) & set(tokens)))
    shares = traffic_shares(rt.store) or {}  # recorded with each poll (what a change was worth)
    summaries = {s: detect_shard_or_none(rt, s, shares.get(s)) for s in scan}
    state = rt.shard_state()
    for shard in tokens:
        if shard not in summaries:
            stored = state.read_pending(shard)
            summaries[shard] = PendingSummary.from_dict(stored) if stored else \
                detect_shard_or_none(rt, shard, shares.get(shard))
    return [summaries[s] for s in sorted(summaries) if summaries[s] is not None], scan


def _days(value: datetime) -> float:
    return as_utc(value).timestamp() / DAY


def _doc_rates(summaries: Sequence[PendingSummary], state: ShardStateStore | None,
               traffic: Traffic | None) -> np.ndarray:
    """Per shard, Σ retrieval share of its pending docs (per-doc traffic when known; an added
    doc at its shard's mean share per doc, `pending_share`)."""
    total_docs = sum(max(s.docs, 1) for s in summaries) or 1
    rates = []
    for s in summaries:
        if not s.pending_docs:
            rates.append(0.0)
            continue
        table = state.read_pending_docs(s.shard) if state is not None else None
        uniform = s.pending_docs / total_docs  # no request logs: uniform per doc
        if traffic is None or table is None:
            rates.append(uniform)
            continue
        # exact shares (no request-log count: given, not measured) name every doc already
        added = pc.fill_null(pc.equal(table["change"], "added"), False).to_numpy(
            zero_copy_only=False) & (traffic.retrievals is not None)
        shares = traffic.doc_weights(s.shard, table["doc_id"].to_pylist(), max(s.docs, 1))
        measured = float(pending_share(shares[~added].sum(), int(added.sum()),
                                       traffic.shards.get(s.shard, 0.0), s.docs))
        rates.append(float(pending_rate(measured, s.pending_docs, total_docs,
                                        traffic.retrievals)))
    return np.array(rates, dtype=float)


def _arrivals(store: StateStore, summaries: Sequence[PendingSummary], traffic: Traffic | None,
              since: datetime) -> tuple[np.ndarray, np.ndarray]:
    """One arrival per doc each poll saw changed (rate history), at the poll's time, each worth
    its shard's mean share per doc (`arrival_mass`) as the poll saw the shard (its docs and, when
    recorded, its retrieval share then; else the share now), in time order: what K is planned
    on. Shards the source no longer has count too: their changes were part of the past."""
    history = RateHistory(store)
    total_docs = sum(max(s.docs, 1) for s in summaries) or 1
    days, rates = [], []
    for shard in sorted({s.shard for s in summaries} | set(history.shards())):
        rows = history.load(shard)
        if not rows.num_rows:
            continue
        rows = rows.filter(pc.and_(pc.greater(rows["polled_at"], since),
                                   pc.greater(rows["changed"], 0)))
        docs = np.asarray(rows["docs"].to_pylist(), dtype=float)
        if traffic is None:  # no request logs yet: every doc of the corpus weighs the same
            share = np.maximum(docs, 1) / total_docs
        else:  # the share recorded with the poll, else the share now
            share = rows["shard_share"].fill_null(traffic.shards.get(shard, 0.0)).to_numpy()
        changed = np.asarray(rows["changed"].to_pylist(), dtype=np.int64)
        at = np.array([_days(t) for t in rows["polled_at"].to_pylist()], dtype=float)
        mass = arrival_mass(1.0, share, docs)
        days.extend(np.repeat(at, changed).tolist())  # one arrival per changed doc
        rates.extend(np.repeat(mass, changed).tolist())
    order = np.argsort(days, kind="stable")
    return np.asarray(days, float)[order], np.asarray(rates, float)[order]


def decide(summaries: Sequence[PendingSummary], now: datetime, budget_gpu_seconds_per_day: float,
           store: StateStore, default_costs: CostModel = CostModel(),
           sla_days: float | None = None, min_interval_days: float = 0.0,
           last_run: dict[str, datetime] | None = None, batch: bool = True,
           start: datetime | None = None, state: ShardStateStore | None = None,
           learn: bool = True) -> CadenceDecision:
    """One tick of the control loop over the given shards (as the sensor calls it)."""
    summaries = sorted(summaries, key=lambda s: s.shard)
    runs = load_runs(store)
    costs = learned_costs(runs, default_costs) if learn else default_costs
    traffic = read_traffic(store)
    last_run = dict(last_run or {})
    for record in runs:  # the run records say when each shard last ran
        finished = as_utc(record.get("finished_at"))
        for shard in record.get("shards", []) if finished else []:
            if shard not in last_run or last_run[shard] < finished:
                last_run[shard] = finished
    start = start or min((as_utc(r["finished_at"]) for r in runs if r.get("finished_at")),
                         default=now)
    spent = [(_days(r["finished_at"]), run_cost_of(r)) for r in runs  # in the budget's unit
             if r.get("finished_at") and r.get("chunks_embedded")]
    arrival_days, arrival_rate = _arrivals(store, summaries, traffic, as_utc(start))
    inputs = LoopInputs(
        shards=[s.shard for s in summaries],
        pending_docs=np.array([s.pending_docs for s in summaries], dtype=float),
        pending_rate=_doc_rates(summaries, state, traffic),
        oldest_pending_days=np.array([_days(s.oldest_pending_change)
                                      if s.oldest_pending_change else np.nan for s in summaries]),
        last_run_days=np.array([_days(last_run[s.shard]) if s.shard in last_run else np.nan
                                for s in summaries]),
        never_indexed=np.array([s.manifest_version == 0 for s in summaries], dtype=bool),
        now_days=_days(now), start_days=_days(start),
        run_days=np.array([d for d, _ in spent]), run_cost_s=np.array([c for _, c in spent]),
        arrival_days=arrival_days, arrival_rate=arrival_rate,
        last_change_days=max((_days(s.last_source_change_seen) for s in summaries
                              if s.last_source_change_seen), default=None))
    config = LoopConfig(budget_gpu_seconds_per_day, costs, sla_days, min_interval_days, batch)
    loop = loop_decide(config, inputs)
    shares = traffic.shards if traffic else {}
    verdicts = [ShardVerdict(
        s.shard, bool(due), reason, float(rate), s.pending_docs,
        None if s.oldest_pending_change is None else
        (now - as_utc(s.oldest_pending_change)).total_seconds() / DAY,
        shares.get(s.shard, 0.0), s.rate_per_doc_day)
        for s, due, reason, rate in zip(summaries, loop.due, loop.reasons, inputs.pending_rate)]
    return CadenceDecision(loop, verdicts, loop.run_shards, costs, inputs)


def decide_for(rt: Runtime, summaries: Sequence[PendingSummary], now: datetime,
               start: datetime | None = None) -> CadenceDecision:
    """`decide` with the runtime's settings (budget, costs, SLA, min interval, batching)."""
    settings = rt.settings
    sla = settings.max_staleness_hours / 24 if settings.max_staleness_hours else None
    return decide(summaries, now, settings.budget_gpu_seconds_per_day, rt.store,
                  CostModel(settings.run_overhead_s, settings.per_chunk_s), sla,
                  settings.min_interval_minutes / 1440, batch=settings.batch_shards,
                  start=start, state=rt.shard_state())
