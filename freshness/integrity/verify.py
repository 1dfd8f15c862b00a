"""Reconciliation: does the index equal the manifest, and the manifest the source?"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import pyarrow.compute as pc

from freshness.pipeline.diff import diff_docs
from freshness.runtime import Runtime


@dataclass
class ShardCheck:
    """Differences found in one shard; all zero means index == manifest == source."""

    shard: str
    docs_source: int = 0
    docs_indexed: int = 0
    docs_missing: int = 0  # in the source, not indexed
    docs_stale: int = 0  # indexed with an older hash
    docs_extra: int = 0  # indexed, gone from the source
    points_indexed: int = 0
    points_missing: int = 0  # in the manifest, not in Qdrant
    points_orphan: int = 0  # in Qdrant, not in the manifest
    payload_mismatch: int = 0  # wrong content hash or model revision (of those checked)
    payloads_checked: int = 0
    chunks_not_current: int = 0  # deep: manifest chunks that re-chunking the source disagrees with
    examples: dict = field(default_factory=dict)
    mismatched_point_ids: list[str] = field(default_factory=list, repr=False)

    @property
    def index_drift(self) -> bool:
        """Qdrant disagrees with the manifest: missing, orphan or wrong-model/hash points.
        Source changes not yet embedded (docs_missing/stale/extra) are lag, not drift."""
        return bool(self.points_missing or self.points_orphan or self.payload_mismatch)

    @property
    def ok(self) -> bool:
        return not (self.docs_missing or self.docs_stale or self.docs_extra or self.points_missing
                    or self.points_orphan or self.payload_mismatch or self.chunks_not_current)

    def as_dict(self) -> dict:
        value = {**asdict(self), "ok": self.ok, "index_drift": self.index_drift}
        value.pop("mismatched_point_ids")
        return value


def verify_shard(rt: Runtime, shard: str, deep: bool = False,
                 sample: int | None = 200) -> ShardCheck:
    """Compare source listing, manifest and index for one shard."""
    listing = rt.source.listing(shard)
    manifest = rt.shard_state().load(shard)
    changes = diff_docs(listing.docs, manifest.chunks, listing.complete, listing.skipped_doc_ids)
    counts = {c: 0 for c in ("added", "modified", "deleted", "unchanged")}
    for change in changes["change"].to_pylist():
        counts[change] += 1
    expected = dict(zip(manifest.chunks["point_id"].to_pylist(),
                        manifest.chunks["content_hash"].to_pylist()))
    indexed = rt.index.shard_point_ids(rt.collection, shard)
    check = ShardCheck(
        shard, docs_source=listing.docs.num_rows, docs_indexed=manifest.doc_count,
        docs_missing=counts["added"], docs_stale=counts["modified"], docs_extra=counts["deleted"],
        points_indexed=len(indexed), points_missing=len(set(expected) - indexed),
        points_orphan=len(indexed - set(expected)),
    )
    ids = sorted(set(expected) & indexed)
    if not deep and sample is not None and len(ids) > sample:
        ids = random.Random(0).sample(ids, sample)
    if ids:
        with rt.index.open_shard(rt.collection, shard) as session:
            payloads = session.retrieve(ids)
        wrong = [i for i in ids if payloads.get(i, {}).get("content_hash") != expected[i]
                 or payloads.get(i, {}).get("model_revision") != rt.model_spec.revision]
        check.payloads_checked, check.payload_mismatch = len(ids), len(wrong)
        check.examples["payload_mismatch"] = wrong[:5]
        check.mismatched_point_ids = wrong
    if deep:
        docs = rt.source.read(shard, listing.docs["doc_id"].to_pylist())
        current = set(rt.chunker.chunk_docs(docs)["point_id"].to_pylist())
        live = manifest.chunks.filter(pc.invert(pc.is_in(
            manifest.chunks["doc_id"], listing.docs["doc_id"])))  # docs not readable now
        check.chunks_not_current = len((set(expected) - set(live["point_id"].to_pylist()))
                                       ^ current)
    return check


def verify(rt: Runtime, shards: Sequence[str] | None = None, deep: bool = False,
           sample: int | None = 200) -> list[ShardCheck]:
    """Check every shard (default: the source's shards plus any the state knows)."""
    present = rt.source.discover().shards
    targets = list(shards) if shards is not None else sorted(
        set(present) | set(rt.shard_state().shards()))
    checks = [verify_shard(rt, s, deep, sample) for s in targets]
    for check in checks:  # still indexed, gone from a source that lists shards: not ok
        if present and check.shard not in present and check.docs_indexed:
            check.docs_extra = check.docs_indexed
            check.examples["vanished_shard"] = "gone from the source: the next sync retires it"
    return checks
