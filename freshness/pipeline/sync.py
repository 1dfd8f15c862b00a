"""One sync: detect what changed per shard, embed only that, write Qdrant, commit manifests.

Order of effects per shard, chosen so that a crash anywhere converges on the next run:
1. plan (read-only): listing ⋈ manifest → changed docs → chunks → points absent from the index;
2. embed the absent points of all shards together (one stream keeps a GPU busy);
3. upsert new points, fix moved chunk positions, then delete retired and orphan points;
4. commit the shard manifest (chunks file first, manifest.json last).
Point ids are deterministic, so a rerun after a crash re-finds what was already written.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from freshness.errors import FreshnessError
from freshness.index.base import PointRecord
from freshness.pipeline.diff import ChunkPlan, damaged_docs, diff_docs, plan_chunks
from freshness.pipeline.retention import record_swap_and_prune
from freshness.pipeline.retire import retire_shard, vanished_shards
from freshness.runtime import Runtime
from freshness.sources.base import Listing, Skip
from freshness.state.lease import run_leased
from freshness.state.manifest import ShardManifest
from freshness.state.runs import record_run
from freshness.util.arrow import replace_column
from freshness.util.faults import fault_point
from freshness.util.hashing import doc_hash, ids_digest
from freshness.util.shard_names import shard_name_problem
from freshness.util.timeutil import as_utc, iso, utc_now

log = logging.getLogger("freshness.pipeline.sync")
ProgressFn = Callable[[int, int, float], None]
VANISHED = "vanished or became unreadable between listing and reading: the next sync retries it"


@dataclass
class ShardResult:
    """What a sync did to one shard."""

    shard: str
    ok: bool = True
    error: str | None = None
    counts: Counter = field(default_factory=Counter)
    skips: list[Skip] = field(default_factory=list)
    notes: Counter = field(default_factory=Counter)
    info: dict = field(default_factory=dict)
    embed_seconds: float = 0.0  # its share of the run's embedding time (by chunks embedded)


@dataclass
class SyncResult:
    """What a sync did overall."""

    collection: str
    serving_collection: str | None
    alias_switched: bool
    shards: list[ShardResult]
    discovery_skips: list[Skip]
    embed_seconds: float
    wall_seconds: float
    model_load_seconds: float = 0.0
    device: str | None = None  # where the chunks were embedded (None: nothing embedded)
    retired_shards: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # run-level problems (e.g. empty source)

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.shards) and not self.errors

    @property
    def totals(self) -> Counter:
        total: Counter = Counter()
        for shard in self.shards:
            total.update(shard.counts)
        return total

    def summary(self) -> dict:
        """A JSON-ready summary: totals, per-shard counts, failures, skips."""
        totals = self.totals
        embedded = totals.get("chunks_embedded", 0)
        return {
            "collection": self.collection,
            "serving_collection": self.serving_collection,
            "alias_switched": self.alias_switched,
            "shards": len(self.shards),
            "failed_shards": {s.shard: s.error for s in self.shards if not s.ok},
            "retired_shards": self.retired_shards,
            "errors": self.errors,
            "totals": dict(sorted(totals.items())),
            "embed_seconds": round(self.embed_seconds, 3),
            "chunks_per_second": round(embedded / self.embed_seconds, 1)
            if self.embed_seconds else None,
            "model_load_seconds": round(self.model_load_seconds, 3),
            "wall_seconds": round(self.wall_seconds, 3),
            "skipped": [s.__dict__ for s in self.discovery_skips]
            + [s.__dict__ for r in self.shards for s in r.skips],
        }


@dataclass
class _Work:
    shard: str
    listing: Listing
    manifest: ShardManifest
    plan: ChunkPlan
    counts: Counter
    changed_at: datetime | None = None  # newest update time of a doc whose content changed
    doc_lineage: dict[str, dict] = field(default_factory=dict)  # doc_id -> source metadata


def _present_points(rt: Runtime, manifest: ShardManifest, changes: pa.Table,
                    now: datetime, check_index: bool = False) -> set[str]:
    """The shard's point ids in the index. Read from the index when the shard has changes
    (crash recovery needs them) or its last index check is older than the interval (drift
    self-healing); otherwise the manifest's ids are trusted — opening an embedded shard costs
    ~0.1 s, which a sensor tick over many quiet shards should not pay."""
    quiet = manifest.version > 0 and not pc.any(pc.not_equal(changes["change"],
                                                             "unchanged")).as_py()
    checked = as_utc(manifest.info.get("index_checked_at"))
    interval = timedelta(minutes=rt.settings.index_check_interval_minutes)
    if quiet and checked and now - checked < interval and not check_index:
        # The cheap probe: the manifest's ids still hash to what was committed and the
        # index holds as many points; else read the ids (a deleted or rebuilt index folder).
        ids = manifest.chunks["point_id"].to_pylist()
        if manifest.info.get("ids_digest") in (None, ids_digest(ids)) and \
                rt.index.shard_point_count(rt.collection, manifest.shard) == len(ids):
            return set(ids)
    manifest.info["index_checked_at"] = iso(now)
    return rt.index.shard_point_ids(rt.collection, manifest.shard)


def _plan_shard(rt: Runtime, shard: str, now: datetime, check_index: bool = False) -> _Work:
    listing = rt.source.listing(shard)
    manifest = rt.shard_state().load(shard)
    changes = diff_docs(listing.docs, manifest.chunks, listing.complete, listing.skipped_doc_ids)
    present = _present_points(rt, manifest, changes, now, check_index)
    edited = changes.filter(pc.is_in(changes["change"], pa.array(["added", "modified"])))
    changed_at = pc.max(edited["updated_at"]).as_py() if edited.num_rows else None
    unchanged = manifest.chunks.filter(pc.is_in(
        manifest.chunks["doc_id"],
        changes.filter(pc.equal(changes["change"], "unchanged"))["doc_id"]))
    damaged = damaged_docs(unchanged, present)
    if damaged:
        changes = replace_column(changes, "change", pc.if_else(
            pc.is_in(changes["doc_id"], pa.array(sorted(damaged), pa.string())),
            "modified", changes["change"]))
    to_read = changes.filter(pc.is_in(changes["change"], pa.array(["added", "modified"])))
    docs = rt.source.read(shard, to_read["doc_id"].to_pylist())
    gone = set(to_read["doc_id"].to_pylist()) - set(docs["doc_id"].to_pylist())
    if gone:  # a copy: a source may cache its listings
        listing = replace(listing, skips=[*listing.skips,
                                          *(Skip(d, shard, VANISHED) for d in sorted(gone))])
    doc_hashes = [doc_hash(t) for t in docs["content"].to_pylist()]
    doc_meta = pa.table({"doc_id": docs["doc_id"], "doc_hash": pa.array(doc_hashes, pa.string()),
                         "updated_at": docs["updated_at"]})
    new_chunks = rt.chunker.chunk_docs(docs)
    fault_point("after_chunking")
    plan = plan_chunks(manifest.chunks, changes, doc_meta, new_chunks, present, now,
                       rt.shard_state().pending_docs_for(manifest))
    counts: Counter = Counter(
        {f"docs_{k}": v for k, v in Counter(changes["change"].to_pylist()).items()})
    counts.update(
        docs_repaired=len(damaged),
        docs_vanished=to_read.num_rows - docs.num_rows,
        docs_skipped=len(listing.skips),
        chunks_embedded=plan.to_embed.num_rows,
        chunks_kept=plan.next_chunks.num_rows - plan.to_embed.num_rows,
        chunks_retired=plan.retired.num_rows,
        orphans_deleted=len(set(plan.orphans) - set(plan.retired["point_id"].to_pylist())),
        chunk_positions_moved=plan.payload_updates.num_rows,
        docs_total=len(set(plan.next_chunks["doc_id"].to_pylist())),
        chunks_total=plan.next_chunks.num_rows,
    )
    lineage = {d: _lineage(m) for d, m in zip(docs["doc_id"].to_pylist(),
                                              docs["metadata"].to_pylist())}
    return _Work(shard, listing, manifest, plan, counts, changed_at, lineage)


def _lineage(metadata: str | None) -> dict:
    """The source's metadata of a doc as read (path, commit, table columns...), for payloads."""
    try:
        value = json.loads(metadata) if metadata else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _payload(row: dict, shard: str, rt: Runtime, now: datetime,
             source: dict | None = None) -> dict:
    return {
        "doc_id": row["doc_id"], "shard": shard, "chunk_index": row["chunk_index"],
        "text": row["text"], "content_hash": row["content_hash"],
        "source_updated_at": iso(row["source_updated_at"]), "embedded_at": iso(now),
        "model": rt.model_spec.name, "model_revision": rt.model_spec.revision,
        "source": source or {},
    }


def _apply_shard(rt: Runtime, work: _Work, vectors: np.ndarray, now: datetime) -> dict:
    plan = work.plan
    rows = plan.to_embed.to_pylist()
    touches_index = bool(rows or plan.orphans or plan.payload_updates.num_rows)
    if touches_index:
        rt.index.ensure_collection(rt.collection, int(vectors.shape[1]) if len(rows)
                                   else rt.embedder.dim)
        points = [PointRecord(r["point_id"], vectors[i],
                              _payload(r, work.shard, rt, now, work.doc_lineage.get(r["doc_id"])))
                  for i, r in enumerate(rows)]
        with rt.index.open_shard(rt.collection, work.shard) as session:
            session.upsert(points)
            session.set_payload({r["point_id"]: {"chunk_index": r["chunk_index"]}
                                 for r in plan.payload_updates.to_pylist()})
            session.delete(plan.orphans)
    fault_point("before_manifest")
    chunks = replace_column(
        plan.next_chunks, "embedded_at", pc.fill_null(plan.next_chunks["embedded_at"],
                                       pa.scalar(now, pa.timestamp("us", "UTC"))))
    adopted = pc.any(pc.is_null(plan.next_chunks["embedded_at"])).as_py()  # a crashed run's
    info = _shard_info(work, now, bool(touches_index or plan.retired.num_rows or adopted))
    changed = touches_index or adopted or work.manifest.version == 0 or any(
        work.counts.get(f"docs_{k}", 0) for k in ("added", "modified", "deleted"))
    state = rt.shard_state()
    if changed or plan.retired.num_rows:
        return state.commit(work.manifest, chunks, plan.retired, info).info
    return state.touch(work.manifest, info).info


def _shard_info(work: _Work, now: datetime, index_changed: bool) -> dict:
    previous = work.manifest.info
    seen = [previous.get("last_source_change_seen")]
    if work.changed_at:  # content changes only: a touch or checkout moves no timestamp
        seen.append(iso(work.changed_at))
    if work.counts.get("docs_deleted"):
        seen.append(iso(work.listing.scanned_at))
    return {
        "last_source_change_seen": max((s for s in seen if s), default=None),
        "last_embedded_at": iso(now) if index_changed else previous.get("last_embedded_at"),
        "last_synced_at": iso(now),
        "oldest_pending_change": None,
        "source_scanned_at": iso(work.listing.scanned_at),
        "index_checked_at": previous.get("index_checked_at"),
        "docs": work.counts["docs_total"],
        "chunks": work.counts["chunks_total"],
        "ids_digest": ids_digest(work.plan.next_chunks["point_id"].to_pylist()),
        "last_run": dict(work.counts),
    }


def sync(rt: Runtime, shards: Sequence[str] | None = None,
         progress: ProgressFn | None = None, logger: logging.Logger | None = None,
         now: datetime | None = None, check_index: bool = False) -> SyncResult:
    """Bring the given shards (default: every shard the source has) up to date.

    `now` stamps embedded_at / retired_at (default: the wall clock); replays of a change log
    pass the replayed time so that lineage lines up with the log. `check_index` reads every
    shard's point ids from Qdrant even when nothing changed (repairs drift at once).
    """
    logger = logger or log
    replayed = now is not None  # the run's records then follow the replayed clock too
    started, now = time.perf_counter(), now or utc_now()
    rt.source.refresh()
    discovery = rt.source.discover()
    targets = list(shards) if shards is not None else discovery.shards
    vanished, keep_reason = vanished_shards(rt, discovery, shards)
    results: dict[str, ShardResult] = {}
    work: list[_Work] = []
    for shard in targets:
        result = results[shard] = ShardResult(shard)
        problem = shard_name_problem(shard)
        if problem:
            result.ok, result.error = False, problem
            continue
        if shard in vanished:
            continue  # retired below
        if discovery.shards and shard not in discovery.shards:
            result.info = {"note": "not in the source and never indexed: nothing to do"}
            continue
        try:
            item = _plan_shard(rt, shard, now, check_index)
        except FreshnessError as exc:
            result.ok, result.error = False, str(exc)
            logger.error("shard %s: %s", shard, exc)
            continue
        result.counts, result.skips, result.notes = item.counts, item.listing.skips, \
            item.listing.notes
        if item.plan.to_embed.num_rows:
            rt.embedder.prefetch()  # load the model while the other shards are planned
        work.append(item)
        logger.info("shard %s planned: %s", shard, dict(item.counts))

    texts = [t for w in work for t in w.plan.to_embed["text"].to_pylist()]
    load_started = time.perf_counter()
    if texts:
        rt.embedder.warm()  # load the model (or check the endpoint) outside the embedding timer
    model_load_seconds = time.perf_counter() - load_started
    embed_started, tokens_before = time.perf_counter(), rt.embedder.tokens_used
    vectors = _embed(rt, texts, progress, logger)
    embed_seconds = time.perf_counter() - embed_started if texts else 0.0

    offset = 0
    for item in work:
        n = item.plan.to_embed.num_rows
        results[item.shard].embed_seconds = embed_seconds * n / len(texts) if texts else 0.0
        try:
            results[item.shard].info = run_leased(  # one run at a time per shard
                rt.store, rt.collection, item.shard, item.manifest.version,
                rt.settings.lock_timeout_s,
                partial(_apply_shard, rt, item, vectors[offset:offset + n], now))
        except FreshnessError as exc:
            results[item.shard].ok, results[item.shard].error = False, str(exc)
            logger.error("shard %s: %s", item.shard, exc)
        offset += n

    retired = _retire(rt, vanished, results, logger)
    switched = maybe_switch_alias(rt, discovery.shards)
    errors = [keep_reason] if keep_reason else []
    device = rt.embedder.device if texts else None
    tokens = (rt.embedder.tokens_used - tokens_before) or \
        sum(pc.sum(w.plan.to_embed["n_tokens"]).as_py() or 0 for w in work)
    try:
        wall = time.perf_counter() - started
        record_run(rt.store, [w.shard for w in work], len(texts), embed_seconds,
                   model_load_seconds, wall, device, tokens=tokens,
                   cost_unit=rt.settings.cost_unit,
                   usd_per_million_tokens=rt.settings.usd_per_million_tokens,
                   finished_at=now + timedelta(seconds=wall) if replayed else None)
    except FreshnessError as exc:  # e.g. a full disk: the shards' own results stand
        errors.append(f"run record not written: {exc}")
    return SyncResult(rt.collection, rt.serving_collection(), switched, list(results.values()),
                      discovery.skips, embed_seconds, time.perf_counter() - started,
                      model_load_seconds, device, retired, errors)


def _retire(rt: Runtime, vanished: list[str], results: dict[str, ShardResult],
            logger: logging.Logger) -> list[str]:
    """Retire each vanished shard (points deleted, state archived); return those retired."""
    retired = []
    for shard in vanished:
        result = results[shard] = ShardResult(shard)
        try:
            result.info = retire_shard(rt, shard)
        except FreshnessError as exc:
            result.ok, result.error = False, str(exc)
            logger.error("shard %s: retiring failed: %s", shard, exc)
            continue
        result.counts.update(chunks_retired=sum(
            c["chunks_retired"] for c in result.info["collections"].values()))
        retired.append(shard)
        logger.info("shard %s vanished from the source: retired", shard)
    return retired


def _embed(rt: Runtime, texts: list[str], progress: ProgressFn | None,
           logger: logging.Logger) -> np.ndarray:
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)

    def report(done: int, total: int, seconds: float) -> None:
        logger.info("embedded %d/%d chunks (%.1f chunks/s)", done, total,
                    done / seconds if seconds else 0.0)
        if progress:
            progress(done, total, seconds)

    return rt.embedder.encode(texts, progress=report)


def maybe_switch_alias(rt: Runtime, shards: Sequence[str]) -> bool:
    """Point the alias at the configured model's collection once every shard is built in it.

    The first build takes the alias at once (nothing to protect); a model change keeps
    queries on the old collection until the new one is complete (blue/green).
    """
    alias, target = rt.settings.alias, rt.collection
    current = rt.index.resolve_alias(alias)
    if current == target:
        return False
    state = rt.shard_state(target)
    built = set(state.shards())
    if not built:
        return False
    if current is not None and not set(shards) <= built:
        return False
    rt.index.set_alias(alias, target)
    log.info("alias %s now points to %s (was %s)", alias, target, current)
    record_swap_and_prune(rt, current, rt.settings.keep_old_collections)
    return True
