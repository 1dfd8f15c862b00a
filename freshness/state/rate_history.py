"""Per-shard change-rate history: one row per poll, persisted beside the shard state.

Each poll counts the docs whose content changed since the previous poll (hash against the
hashes that poll saw; several edits between polls count once, which the estimator accounts
for; a touch that keeps the bytes counts none). The rate per doc per day is
the grouped maximum-likelihood estimate over the last `window_days`; a Poisson CUSUM on each
poll's count flags a change-rate spike.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from freshness.errors import StateError
from freshness.sources.base import Listing
from freshness.state import layout
from freshness.state.store import StateStore
from freshness.util.arrow import replace_column
from freshness.util.duck import registered
from freshness.util.rates import PoissonCusum, gamma_posterior_rate, grouped_poll_rate_mle
from freshness.util.timeutil import DAY_S, as_utc

log = logging.getLogger("freshness.state.rate_history")

RATE_SCHEMA = pa.schema([
    ("polled_at", pa.timestamp("us", tz="UTC")),
    ("interval_days", pa.float64()),
    ("docs", pa.int64()),
    ("changed", pa.int64()),
    ("rate_per_doc_day", pa.float64()),
    ("cusum", pa.float64()),
    ("spike", pa.bool_()),
    # the shard's retrieval share (recency's traffic file) when the poll ran; null without one.
    # With `docs`, what a change seen at this poll was worth on average, as it was then
    ("shard_share", pa.float64()),
])
MAX_ROWS = 5000
MERGE_DAYS = 1.0  # consecutive polls that saw no change share one row, up to this long


def _extends_quiet_row(rows: pa.Table, row: dict) -> bool:
    """Whether this quiet poll can extend the previous row instead of adding one. Lossless for
    the estimators: polls with no change over the same docs multiply to one poll over the summed
    interval (exp(-rλ·i₁)·exp(-rλ·i₂)), and the CUSUM only decreases over them. Without it a
    shard with pending changes, re-polled every 30 s, filled MAX_ROWS in under two days and the
    90-day rate window (and the policy's arrival history) silently shrank to that."""
    if not rows.num_rows or row["changed"] or row["spike"]:
        return False
    last = rows.slice(rows.num_rows - 1).to_pylist()[0]
    return (not last["changed"] and not last["spike"] and last["docs"] == row["docs"]
            and last["interval_days"] + row["interval_days"] <= MERGE_DAYS)


@dataclass(frozen=True)
class RatePoint:
    shard: str
    polled_at: datetime
    docs: int
    changed: int
    rate_per_doc_day: float
    spike: bool


class RateHistory:
    """Reads and appends rate rows under `sources/shards/<shard>/rate_history.parquet`."""

    def __init__(self, store: StateStore, window_days: float = 90.0,
                 spike_ratio: float = 3.0, spike_threshold: float = 5.0,
                 prior_rate: float = 0.01, prior_doc_days: float = 30.0) -> None:
        self.store, self.window_days = store, window_days
        self.prior_rate, self.prior_doc_days = prior_rate, prior_doc_days
        self.spike_ratio, self.spike_threshold = spike_ratio, spike_threshold

    def _path(self, shard: str) -> tuple[str, ...]:
        return layout.rate_history_path(shard)

    def shards(self) -> list[str]:
        """Shards with a recorded rate history."""
        return [layout.shard_from_segment(n)
                for n in self.store.list_dir(*layout.source_shards_dir())]

    def load(self, shard: str) -> pa.Table:
        """The shard's polls; empty when none, or when the file is damaged (logged: the
        history restarts, which only widens the rate estimate's prior for a while)."""
        try:
            table = self.store.read_table(*self._path(shard))
            if table is None:
                return RATE_SCHEMA.empty_table()
            for name in RATE_SCHEMA.names:  # a file from an older version: the column is null
                if name not in table.column_names and RATE_SCHEMA.field(name).nullable:
                    table = table.append_column(RATE_SCHEMA.field(name),
                                                pa.nulls(table.num_rows, pa.float64()))
            return table.select(RATE_SCHEMA.names).cast(RATE_SCHEMA)
        except (StateError, KeyError, ValueError, pa.ArrowInvalid) as exc:
            log.warning("ignoring damaged rate history of shard %s: %s", shard, exc)
            return RATE_SCHEMA.empty_table()

    def latest(self, shard: str) -> dict | None:
        """The shard's newest poll row (RATE_SCHEMA as a dict), or None before the first."""
        rows = self.load(shard)
        return rows.slice(rows.num_rows - 1).to_pylist()[0] if rows.num_rows else None

    def estimate(self, rows: pa.Table, now: datetime) -> float:
        """Rate per doc per day from the polls inside the window, shrunk towards the prior.

        The maximum-likelihood estimate is weighted by its exposure (doc-days) against
        `prior_doc_days` of the prior rate, so a new shard observed for seconds does not get
        an absurd rate; with months of history the prior no longer matters.
        """
        since = now - timedelta(days=self.window_days)
        recent = rows.filter(pc.greater(rows["polled_at"], since)) if rows.num_rows else rows
        intervals = recent["interval_days"].to_pylist()
        changed, docs = recent["changed"].to_pylist(), recent["docs"].to_pylist()
        exposure = sum(i * n for i, n in zip(intervals, docs))
        mle = grouped_poll_rate_mle(intervals, changed, docs)
        if not math.isfinite(mle):
            mle = gamma_posterior_rate(sum(changed), exposure or 1.0)
        return (mle * exposure + self.prior_rate * self.prior_doc_days) / \
            (exposure + self.prior_doc_days)

    def _changed(self, listing: Listing, previous: datetime, has_history: bool) -> int:
        """Docs added or edited since the previous poll, by content: their hash differs from
        the one that poll saw (a touch, checkout or restore of the same bytes is no change).
        The first poll (no hashes yet) counts docs updated inside its interval."""
        hashes = listing.docs.select(["doc_id", "doc_hash"])
        try:
            before = self.store.read_table(*layout.poll_hashes_path(listing.shard))
        except StateError as exc:  # damaged: counted as a first poll, then rewritten
            log.warning("ignoring damaged poll hashes of shard %s: %s", listing.shard, exc)
            before = None
        if before is None or not has_history:
            changed = int(pc.sum(pc.greater(listing.docs["updated_at"], previous)).as_py() or 0)
        else:
            with registered(now=hashes, before=before.select(["doc_id", "doc_hash"])) as con:
                changed = int(con.sql(
                    """SELECT count(*) FROM now n LEFT JOIN before b USING (doc_id)
                       WHERE b.doc_hash IS DISTINCT FROM n.doc_hash""").fetchall()[0][0])
        if changed or before is None or before.num_rows != hashes.num_rows:
            self.store.write_table(hashes, *layout.poll_hashes_path(listing.shard))
        return changed

    def record(self, listing: Listing, shard_share: float | None = None) -> RatePoint:
        """Append this poll (a listing) to the shard's history and return the new estimate;
        `shard_share`: the shard's retrieval share now, if recency has measured one."""
        rows, now = self.load(listing.shard), as_utc(listing.scanned_at)
        updated = listing.docs["updated_at"]
        if rows.num_rows:
            previous = as_utc(rows["polled_at"][-1].as_py())
            interval = max((now - previous).total_seconds() / DAY_S, 1e-9)
        else:  # first poll: use last-modified times over the window as the first observation
            oldest = pc.min(updated).as_py() if listing.docs.num_rows else now
            interval = max(min(self.window_days, (now - as_utc(oldest)).total_seconds() / DAY_S),
                           1e-9)
            previous = now - timedelta(days=interval)
        changed = self._changed(listing, previous, has_history=bool(rows.num_rows))
        baseline = self.estimate(rows, now) if rows.num_rows else None
        cusum = PoissonCusum(baseline or 0.0, self.spike_ratio, self.spike_threshold,
                             float(rows["cusum"][-1].as_py()) if rows.num_rows else 0.0)
        spike = bool(baseline) and cusum.update(changed, listing.docs.num_rows * interval)
        row = {"polled_at": now, "interval_days": interval, "docs": listing.docs.num_rows,
               "changed": changed, "rate_per_doc_day": 0.0,
               "cusum": 0.0 if spike else cusum.statistic, "spike": spike,
               "shard_share": shard_share}
        if _extends_quiet_row(rows, row):  # one row per quiet stretch, not one per poll
            row["interval_days"] += float(rows["interval_days"][-1].as_py())
            rows = rows.slice(0, rows.num_rows - 1)
        table = pa.concat_tables([rows, pa.Table.from_pylist([row], RATE_SCHEMA)])
        rate = self.estimate(table, now)
        table = replace_column(table, "rate_per_doc_day", pa.array(
            table["rate_per_doc_day"].to_pylist()[:-1] + [rate], pa.float64()))
        self.store.write_table(table.slice(max(0, table.num_rows - MAX_ROWS)), *self._path(
            listing.shard))
        return RatePoint(listing.shard, now, listing.docs.num_rows, changed, rate, spike)
