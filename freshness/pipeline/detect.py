"""Detection without embedding: per shard, what is pending and since when."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

from freshness.errors import FreshnessError
from freshness.pipeline.diff import diff_docs
from freshness.runtime import Runtime
from freshness.sources.base import Discovery
from freshness.state.manifest import PENDING_DOCS_SCHEMA
from freshness.state.rate_history import RateHistory
from freshness.state.traffic import traffic_shares
from freshness.util.duck import registered
from freshness.util.timeutil import DAY_S, as_utc, iso

log = logging.getLogger("freshness.pipeline.detect")


@dataclass
class PendingSummary:
    """A shard's changes not yet embedded, as of one scan."""

    shard: str
    added: int
    modified: int
    deleted: int
    unchanged: int
    skipped: int
    complete: bool
    scanned_at: datetime
    manifest_version: int
    oldest_pending_change: datetime | None
    last_source_change_seen: datetime | None
    docs: int = 0
    pending_since_sum_days: float = 0.0  # sum over pending docs of their change time (days)
    rate_per_doc_day: float | None = None
    rate_spike: bool = False

    @property
    def pending_docs(self) -> int:
        return self.added + self.modified + self.deleted

    def pending_doc_days(self, now: datetime) -> float:
        """Sum over pending docs of the days each has waited (staleness debt, unweighted)."""
        return max(0.0, self.pending_docs * now.timestamp() / DAY_S - self.pending_since_sum_days)

    @classmethod
    def from_dict(cls, value: dict) -> PendingSummary:
        """Inverse of `as_dict` (as stored in pending.json)."""
        names = set(cls.__dataclass_fields__)
        kept = {k: v for k, v in value.items() if k in names}
        for key in ("scanned_at", "oldest_pending_change", "last_source_change_seen"):
            kept[key] = as_utc(kept.get(key))
        return cls(**kept)

    def as_dict(self) -> dict:
        value = asdict(self)
        value["pending_docs"] = self.pending_docs
        for key in ("scanned_at", "oldest_pending_change", "last_source_change_seen"):
            value[key] = iso(value[key])
        return value


def _pending_since(changes: pa.Table, scanned_at: datetime,
                   previous: pa.Table | None) -> pa.Table:
    """Per pending doc, when it first changed as far as we know: its update time (deletes: the
    scan time), or an earlier time seen pending by a previous poll of the same version; and
    how (`change`: added, modified or deleted, against the manifest)."""
    previous = previous if previous is not None else PENDING_DOCS_SCHEMA.empty_table()
    with registered(changes=changes, previous=previous) as con:
        return con.sql(
            """SELECT c.doc_id, least(coalesce(c.updated_at, ?::TIMESTAMPTZ),
                                      coalesce(p.since, c.updated_at, ?::TIMESTAMPTZ)) AS since,
                      c.change
               FROM changes c LEFT JOIN previous p USING (doc_id)
               WHERE c.change IN ('added', 'modified', 'deleted') ORDER BY c.doc_id""",
            params=[scanned_at, scanned_at]).to_arrow_table().cast(PENDING_DOCS_SCHEMA)


def _latest_change(changes: pa.Table, pending: pa.Table) -> datetime | None:
    """When the source last changed a pending doc: its newest update time (a doc edited again
    while pending counts at its latest edit: the source is still busy), or when a deletion was
    first seen. Content changes only."""
    if not pending.num_rows:
        return None
    touched = changes.filter(pc.is_in(changes["change"], pa.array(["added", "modified"])))
    times = [pc.max(pending["since"]).as_py(), pc.max(touched["updated_at"]).as_py()]
    return max((t for t in times if t is not None), default=None)


def detect_shard(rt: Runtime, shard: str, record_rate: bool = True,
                 shard_share: float | None = None) -> PendingSummary:
    """Diff one shard's listing against its manifest; record the result and the poll (with
    the shard's retrieval share, `shard_share`, when recency has measured one)."""
    state = rt.shard_state()
    listing = rt.source.listing(shard)
    rate = RateHistory(rt.store).record(listing, shard_share) if record_rate else None
    manifest = state.load(shard)
    changes = diff_docs(listing.docs, manifest.chunks, listing.complete, listing.skipped_doc_ids)
    counts = {k: 0 for k in ("added", "modified", "deleted", "unchanged")}
    for change in changes["change"].to_pylist():
        counts[change] += 1
    previous = state.read_pending(shard)
    same_version = bool(previous) and previous.get("manifest_version") == manifest.version
    pending = _pending_since(changes, listing.scanned_at,
                             state.read_pending_docs(shard) if same_version else None)
    state.write_pending_docs(shard, pending)
    oldest = pc.min(pending["since"]).as_py() if pending.num_rows else None
    newest = _latest_change(changes, pending)
    since = [t.timestamp() / DAY_S for t in pending["since"].to_pylist()]
    summary = PendingSummary(
        shard, counts["added"], counts["modified"], counts["deleted"], counts["unchanged"],
        len(listing.skips), listing.complete, listing.scanned_at, manifest.version,
        oldest, newest, docs=listing.docs.num_rows, pending_since_sum_days=sum(since),
        rate_per_doc_day=rate.rate_per_doc_day if rate else None,
        rate_spike=rate.spike if rate else False,
    )
    state.write_pending(shard, summary.as_dict())
    return summary


def detect(rt: Runtime, shards: Sequence[str] | None = None
           ) -> tuple[Discovery, list[PendingSummary]]:
    """Discover shards and record what is pending in each."""
    rt.source.refresh()
    discovery = rt.source.discover()
    targets = list(shards) if shards is not None else discovery.shards
    shares = traffic_shares(rt.store) or {}
    found = (detect_shard_or_none(rt, s, shares.get(s)) for s in targets)
    return discovery, [p for p in found if p is not None]


def detect_shard_or_none(rt: Runtime, shard: str, shard_share: float | None = None
                         ) -> PendingSummary | None:
    """`detect_shard`, or None (logged) when the shard's state is damaged: one shard never
    hides the others' changes; its sync names the fix (`freshness repair`)."""
    try:
        return detect_shard(rt, shard, shard_share=shard_share)
    except FreshnessError as exc:
        log.error("shard %s: detection failed: %s", shard, exc)
        return None
