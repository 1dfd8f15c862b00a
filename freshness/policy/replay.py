"""A change log as arrays, and the exact score of any run schedule over it.

Retrieval-weighted freshness is exact for an infinite query stream: each doc is retrieved at a
rate proportional to its popularity (Zipf over a seeded random ranking by default) while it exists
in the source or the index, and a retrieval is stale while the doc's latest change is not embedded
(edits, additions not indexed yet, deletions still served). A run pays the overhead once, a
listing per shard in its partition range and a per-chunk cost per pending doc.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa

from freshness.policy.planner import CostModel
from freshness.state.traffic import TOP_K, doc_shares
from freshness.util.timeutil import DAY_S


@dataclass
class SimResult:
    policy: str
    parameter: float
    budget: float | None
    days: float
    runs: int
    gpu_seconds: float
    freshness: float
    mean_age_hours: float
    retrieval_weighted_freshness: float
    run_times: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    run_shards: list[np.ndarray] = field(default_factory=list, repr=False)
    lower_bound_stale: float | None = None  # oracle only: Lagrangian bound at the budget
    stale_mass: float = 0.0  # Σ q_d × seconds served stale (the oracle's objective's unit)

    @property
    def gpu_seconds_per_day(self) -> float:
        return self.gpu_seconds / self.days

    @property
    def stale_share(self) -> float:
        """Share of retrievals served stale (1 − retrieval-weighted freshness)."""
        return 1.0 - self.retrieval_weighted_freshness

    def as_dict(self) -> dict:
        return {"policy": self.policy, "parameter": round(float(self.parameter), 6),
                "budget": self.budget, "gpu_seconds": round(self.gpu_seconds, 1),
                "gpu_seconds_per_day": round(self.gpu_seconds_per_day, 4),
                "freshness": round(float(self.freshness), 5),
                "mean_age_hours": round(float(self.mean_age_hours), 3),
                "retrieval_weighted_freshness": round(float(self.retrieval_weighted_freshness), 6),
                "stale_share": round(float(self.stale_share), 6),
                "runs": self.runs, "days": round(self.days, 2)}


@dataclass
class ChangeLog:
    """Changes as arrays in time order (seconds since start), plus doc popularity."""

    times: np.ndarray
    docs: np.ndarray  # doc index
    shards: np.ndarray  # shard index
    deletes: np.ndarray  # bool
    initial_docs: np.ndarray  # doc indices alive at time 0
    shard_names: list[str]
    doc_shard: np.ndarray
    popularity: np.ndarray
    horizon: float
    doc_ids: list[str] = field(default_factory=list)
    _vanishings: tuple[np.ndarray, np.ndarray] | None = field(
        default=None, init=False, repr=False, compare=False)  # computed once per log

    @classmethod
    def from_parquet(cls, snapshot: str, replay: str, **kwargs) -> ChangeLog:
        """Read a snapshot.parquet / replay.parquet pair (tldr-replay schema)."""
        import pyarrow.parquet as pq

        return cls.from_tables(
            pq.read_table(snapshot, columns=["path", "shard", "committed_at"]),
            pq.read_table(replay, columns=["committed_at", "path", "shard", "op"]), **kwargs)

    @classmethod
    def from_tables(cls, snapshot: pa.Table, changes: pa.Table, zipf_s: float = 1.0,
                    seed: int = 0, popularity: dict[str, float] | None = None,
                    start: float | None = None) -> ChangeLog:
        """From the replay schema: snapshot (path, shard) and changes (committed_at, path,
        shard, op) in replay order. `start`: the epoch second of time 0 (default: the first
        commit)."""
        if start is None:
            start = min(c.timestamp() for c in changes["committed_at"].to_pylist()[:1]
                        + snapshot["committed_at"].to_pylist()[:1])
        paths = list(dict.fromkeys(snapshot["path"].to_pylist() + changes["path"].to_pylist()))
        index = {p: i for i, p in enumerate(paths)}
        shard_of = dict(zip(snapshot["path"].to_pylist(), snapshot["shard"].to_pylist()))
        shard_of.update(zip(changes["path"].to_pylist(), changes["shard"].to_pylist()))
        names = sorted(set(shard_of.values()))
        shard_index = {s: i for i, s in enumerate(names)}
        rng = np.random.default_rng(seed)
        if popularity is None:
            ranks = rng.permutation(len(paths)) + 1
            weights = 1.0 / ranks.astype(float) ** zipf_s
        else:
            weights = np.array([popularity.get(p, 0.0) for p in paths], dtype=float)
        times = np.array([t.timestamp() - start for t in changes["committed_at"].to_pylist()])
        return cls(
            times=times,
            docs=np.array([index[p] for p in changes["path"].to_pylist()], dtype=np.int64),
            shards=np.array([shard_index[s] for s in changes["shard"].to_pylist()],
                            dtype=np.int64),
            deletes=np.array([op == "delete" for op in changes["op"].to_pylist()], dtype=bool),
            initial_docs=np.array([index[p] for p in snapshot["path"].to_pylist()],
                                  dtype=np.int64),
            shard_names=names,
            doc_shard=np.array([shard_index[shard_of[p]] for p in paths], dtype=np.int64),
            popularity=weights / weights.sum(),
            horizon=float(times.max()) if len(times) else 0.0,
            doc_ids=paths,
        )

    def events(self) -> tuple[np.ndarray, np.ndarray]:
        """Distinct change times and, per time, the offset of its first change."""
        times, starts = np.unique(self.times, return_index=True)
        return times, np.append(starts, len(self.times))

    def vanishings(self) -> tuple[np.ndarray, np.ndarray]:
        """When a shard's last doc goes (seconds) and which shard: the source stops listing it,
        and the sensor retires it at its next tick (a run that embeds nothing, outside the
        budget). Counted per change instant, as a poll sees the source; an instant that leaves
        the whole source empty retires nothing (`pipeline.retire`)."""
        if self._vanishings is None:
            self._vanishings = self._find_vanishings()
        return self._vanishings

    def _find_vanishings(self) -> tuple[np.ndarray, np.ndarray]:
        alive = np.zeros(len(self.popularity), bool)
        alive[self.initial_docs] = True
        docs = np.bincount(self.doc_shard[self.initial_docs],
                           minlength=len(self.shard_names))
        times, offsets = self.events()
        gone_t, gone_s = [], []
        for k, t in enumerate(times.tolist()):
            listed = {}  # shards whose count moves at this instant: listed before it?
            for c in range(offsets[k], offsets[k + 1]):
                d, s = self.docs[c], self.shards[c]
                if alive[d] == self.deletes[c]:  # an add or a delete moves the count
                    listed.setdefault(s, docs[s] > 0)
                    alive[d] = not self.deletes[c]
                    docs[s] += -1 if self.deletes[c] else 1
            empty = sorted(s for s, before in listed.items() if before and docs[s] == 0)
            if empty and docs.sum():
                gone_t.extend([t] * len(empty))
                gone_s.extend(empty)
        return np.array(gone_t, float), np.array(gone_s, np.int64)

    def with_activity_reversed(self) -> ChangeLog:
        """The same changes in the same order, the gaps between commit instants in reverse
        order: where this log's activity ramps up, the variant's ramps down (bursts keep their
        shape). A hostile variant for the evaluation: a plan fitted to the past meets the
        opposite trend."""
        instants = np.unique(self.times)
        if len(instants) < 2:
            return self
        moved = instants[0] + np.concatenate([[0.0], np.cumsum(np.diff(instants)[::-1])])
        times = moved[np.searchsorted(instants, self.times)]
        return replace(self, times=times, horizon=float(times.max()))

    def known_traffic(self, top_k: int = TOP_K) -> np.ndarray:
        """Per-doc retrieval shares as the policy sees them: the top-k docs' own shares, the
        rest of each shard sharing its remainder equally (`freshness.state.traffic`)."""
        shard_docs = np.bincount(self.doc_shard, minlength=len(self.shard_names))
        return doc_shares(self.popularity, self.doc_shard, shard_docs, top_k, self.doc_rank())

    def doc_rank(self) -> np.ndarray:
        """Each doc's place in (shard, doc_id) order: how the traffic files break ties."""
        names = np.array(self.shard_names, dtype=object)[self.doc_shard]
        ids = np.array(self.doc_ids, dtype=object) if len(self.doc_ids) == len(self.doc_shard) \
            else np.arange(len(self.doc_shard))
        return np.argsort(np.lexsort((ids, names)))


def evaluate(log: ChangeLog, run_times: np.ndarray, run_shards: list[np.ndarray],
             costs: CostModel, policy: str = "schedule", parameter: float = 0.0,
             budget: float | None = None) -> SimResult:
    """Freshness and spend of a schedule: runs at `run_times` (seconds), each embedding what is
    pending in the shards `run_shards[i]` (their partition range is listed). A shard whose last
    doc goes is retired at once, whatever the schedule (`ChangeLog.vanishings`: what the sensor
    does, free of the budget): its deletions stop being served then."""
    inside = np.asarray(run_times, float) <= log.horizon  # a run after the log ends: not scored
    gone_t, gone_s = log.vanishings()
    all_times = np.concatenate([np.asarray(run_times, float)[inside], gone_t])
    free = np.concatenate([np.zeros(int(inside.sum()), bool), np.ones(len(gone_t), bool)])
    order = np.lexsort((~free, all_times))  # in time order, a retirement first at a tie
    all_shards = [x for x, keep in zip(run_shards, inside) if keep] + \
        [np.array([s]) for s in gone_s.tolist()]
    run_times, free = all_times[order], free[order]
    run_shards = [np.asarray(all_shards[i]) for i in order.tolist()]
    runs = len(run_times)
    shards = len(log.shard_names)
    end = np.full(len(log.times), log.horizon)
    run_id = np.full(len(log.times), runs)
    member = np.zeros((shards, runs), bool)
    for r, included in enumerate(run_shards):
        member[included, r] = True
    for s in range(shards):
        mine = np.flatnonzero(log.shards == s)
        if not len(mine):
            continue
        ids = np.flatnonzero(member[s])
        k = np.searchsorted(run_times[ids], log.times[mine], side="left")
        done = k < len(ids)
        run_id[mine[done]] = ids[k[done]]
        end[mine[done]] = run_times[ids[k[done]]]
    order = np.lexsort((run_id, log.docs))
    doc, rid = log.docs[order], run_id[order]
    first = np.ones(len(order), bool)
    first[1:] = (doc[1:] != doc[:-1]) | (rid[1:] != rid[:-1])
    starts = np.flatnonzero(first)
    lasts = np.append(starts[1:], len(order)) - 1
    g_doc, g_run = doc[starts], rid[starts]
    g_first, g_end = log.times[order][starts], end[order][starts]
    g_delete = log.deletes[order][lasts]
    waited = g_end - g_first
    q = log.popularity
    # lifetime: from time 0 (initial docs) or the first change; a propagated deletion ends it
    # until the doc comes back
    alive_from = np.full(len(q), np.nan)
    changed_first = np.full(len(q), np.inf)
    np.minimum.at(changed_first, log.docs, log.times)
    alive_from[np.isfinite(changed_first)] = changed_first[np.isfinite(changed_first)]
    alive_from[log.initial_docs] = 0.0
    exists = ~np.isnan(alive_from)
    lifetime = np.where(exists, log.horizon - np.nan_to_num(alive_from), 0.0)
    closed = g_delete & (g_run < runs)
    following = np.append(g_doc[1:] == g_doc[:-1], False)
    back = np.where(following, np.append(g_first[1:], log.horizon), log.horizon)
    gap = np.where(closed, back - g_end, 0.0)
    doc_time = lifetime.sum() - gap.sum()
    w_doc_time = (q * lifetime).sum() - (q[g_doc] * gap).sum()
    embedded = np.bincount(g_run[g_run < runs], minlength=runs)
    scanned = np.array([ix.max() - ix.min() + 1 if len(ix) else 0 for ix in run_shards])
    active = (embedded > 0) & ~free
    gpu = float(costs.run_s(scanned[active], embedded[active]).sum())
    days = max(log.horizon / DAY_S, 1e-9)
    return SimResult(
        policy, parameter, budget, days, int(active.sum()), gpu,
        freshness=1 - waited.sum() / doc_time if doc_time else 1.0,
        mean_age_hours=(waited ** 2 / 2).sum() / doc_time / 3600 if doc_time else 0.0,
        retrieval_weighted_freshness=1 - (q[g_doc] * waited).sum() / w_doc_time
        if w_doc_time else 1.0,
        run_times=run_times[active], run_shards=[x for x, a in zip(run_shards, active) if a],
        stale_mass=float((q[g_doc] * waited).sum()))


def changed_shards(log: ChangeLog, cycle: np.ndarray, runs: int) -> list[np.ndarray]:
    """Per cycle index 0..runs-1, the shards that changed in it."""
    pairs = np.unique(cycle * len(log.shard_names) + log.shards)
    by_run = pairs // len(log.shard_names)
    cut = np.searchsorted(by_run, np.arange(runs + 1))
    shard = pairs % len(log.shard_names)
    return [shard[cut[r]:cut[r + 1]] for r in range(runs)]
