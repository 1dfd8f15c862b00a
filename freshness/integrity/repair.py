"""`freshness repair`: fix both directions. A shard's manifest is rebuilt from the index
payloads when it is corrupt or lost; the index is rebuilt from the manifest and the source when
points are missing or the shard's index folder is damaged (dropped, then re-embedded by a sync
that reads every shard's point ids).

Every point carries its lineage (doc_id, chunk_index, content_hash, source_updated_at,
embedded_at), so the index alone says what is indexed. The rebuilt manifest leaves `doc_hash`
empty: the next sync sees every doc of the shard as modified, re-reads and re-chunks it, finds
its points already there (nothing is embedded again), retires points of older versions and
deletes the points of docs gone from the source. Repair itself never deletes a point, and it
writes a new manifest version (never an older number) while holding the shard's lease.
"""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa

from freshness.errors import IndexDamagedError, StateError
from freshness.pipeline.sync import sync
from freshness.runtime import Runtime
from freshness.state import layout
from freshness.state.lease import ShardLease
from freshness.state.manifest import MANIFEST_SCHEMA
from freshness.util.shard_names import shard_name_problem
from freshness.util.timeutil import as_utc, file_stamp, iso, utc_now

LINEAGE = ("doc_id", "chunk_index", "content_hash")
# What a broken manifest raises when loaded: unreadable files (StateError), missing keys,
# wrong types, a chunks file of another schema.
LOAD_ERRORS = (StateError, KeyError, ValueError, TypeError, NotImplementedError)


def _folder(rt: Runtime, shard: str) -> tuple[str, ...]:
    return layout.shard_dir(rt.collection, shard)


def manifest_problem(rt: Runtime, shard: str) -> str | None:
    """Why the shard's manifest cannot be loaded, or None when it loads."""
    try:
        rt.shard_state().load(shard)
    except LOAD_ERRORS as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def broken_shards(rt: Runtime) -> list[str]:
    """Shards of the configured collection whose manifest does not load."""
    names = rt.shard_state().shard_folders()
    return [s for s in names if shard_name_problem(s) is None and manifest_problem(rt, s)]


def _previous(rt: Runtime, shard: str) -> tuple[dict, int]:
    """(readable old manifest info or {}, highest version seen in manifest or chunk files)."""
    try:
        info = rt.store.read_json(*_folder(rt, shard), layout.MANIFEST_FILE) or {}
    except StateError:
        info = {}
    versions = [0]
    try:
        versions.append(int(info.get("version", 0)))
    except (TypeError, ValueError):
        pass
    for name in rt.store.list_dir(*_folder(rt, shard)):
        if name.startswith("chunks-") and name.endswith(".parquet") and name[7:15].isdigit():
            versions.append(int(name[7:15]))
    return info, max(versions)


def _latest(*values: object) -> str | None:
    times = [t for t in (as_utc(v) if isinstance(v, (str, datetime)) else None
                         for v in values) if t]
    return iso(max(times)) if times else None


def repair_shard(rt: Runtime, shard: str) -> dict:
    """Write a new manifest version of `shard` rebuilt from the index; return what it did."""
    problem = shard_name_problem(shard)
    if problem:
        raise StateError(problem)
    lease = ShardLease(rt.store, rt.collection, shard)
    lease.acquire(rt.settings.lock_timeout_s)
    try:
        return _repair(rt, shard)
    finally:
        lease.release()


def _repair(rt: Runtime, shard: str) -> dict:
    was_broken = manifest_problem(rt, shard)
    previous, last_version = _previous(rt, shard)
    ids = sorted(rt.index.shard_point_ids(rt.collection, shard))
    payloads: dict[str, dict] = {}
    if ids:
        with rt.index.open_shard(rt.collection, shard) as session:
            payloads = session.retrieve(ids)
    rows, skipped = [], []
    for point_id in ids:
        p = payloads.get(point_id, {})
        if any(p.get(k) is None for k in LINEAGE) or p.get("shard", shard) != shard \
                or p.get("model_revision", rt.model_spec.revision) != rt.model_spec.revision:
            skipped.append(point_id)  # no lineage or not ours: left as an orphan for sync
            continue
        rows.append({
            "doc_id": str(p["doc_id"]), "doc_hash": "", "chunk_index": int(p["chunk_index"]),
            "content_hash": str(p["content_hash"]), "point_id": point_id,
            "n_tokens": len(rt.chunker.tokenizer.encode(
                str(p.get("text", "")), add_special_tokens=False).ids),
            "source_updated_at": as_utc(p.get("source_updated_at")),
            "embedded_at": as_utc(p.get("embedded_at")),
        })
    rows.sort(key=lambda r: (r["doc_id"], r["chunk_index"], r["point_id"]))
    chunks = pa.Table.from_pylist(rows, MANIFEST_SCHEMA)
    version = last_version + 1
    chunks_file = f"chunks-{version:08d}.parquet"
    now = utc_now()
    info = {
        "shard": shard, "collection": rt.collection, "version": version,
        "chunks_file": chunks_file, "format": 1,
        "docs": len({r["doc_id"] for r in rows}), "chunks": len(rows),
        "last_source_change_seen": _latest(previous.get("last_source_change_seen"),
                                           *(r["source_updated_at"] for r in rows)),
        "last_embedded_at": _latest(previous.get("last_embedded_at"),
                                    *(r["embedded_at"] for r in rows)),
        # a run that embedded also synced: the newest embedding bounds a lost last_synced_at
        "last_synced_at": _latest(previous.get("last_synced_at"),
                                  *(r["embedded_at"] for r in rows)),
        "oldest_pending_change": None,
        "source_scanned_at": previous.get("source_scanned_at"),
        "repaired_at": iso(now),
        "repaired_from": "index payloads",
        "last_run": {},
    }
    rt.store.write_table(chunks, *_folder(rt, shard), chunks_file)
    rt.store.write_json(info, *_folder(rt, shard), layout.MANIFEST_FILE)
    return {"shard": shard, "collection": rt.collection, "version": version,
            "points": len(ids), "chunks": len(rows), "docs": info["docs"],
            "points_without_lineage": len(skipped), "was_broken": was_broken}


def _index_problem(rt: Runtime, shard: str) -> str | None:
    """'damaged' when the shard's index cannot be opened, 'missing points' when it lacks
    points its (readable) manifest names, else None."""
    try:
        present = rt.index.shard_point_ids(rt.collection, shard)
    except IndexDamagedError:
        return "damaged"
    if manifest_problem(rt, shard):
        return None
    expected = set(rt.shard_state().load(shard).chunks["point_id"].to_pylist())
    return "missing points" if expected - present else None


def repair(rt: Runtime, shards: list[str] | None = None,
           rebuild_manifests: tuple[str, ...] = ()) -> dict:
    """Repair the given shards (default: every shard the state or the source knows).

    1. a damaged index shard is dropped (under the lease; it is derived data);
    2. a manifest that does not load (or one named in `rebuild_manifests`) is rebuilt from the
       index payloads, or archived when the index was damaged too (rebuilt from the source);
    3. a sync that reads every shard's point ids re-embeds what is missing, deletes orphans
       and retires vanished shards.
    """
    state = rt.shard_state()
    targets = list(shards) if shards else sorted(
        {s for s in state.shard_folders() if shard_name_problem(s) is None}
        | set(rt.source.discover().shards))
    problems = {s: _index_problem(rt, s) for s in targets if shard_name_problem(s) is None}
    for shard, problem in problems.items():
        if problem == "damaged":
            _leased(rt, shard, lambda s=shard: rt.index.drop_shard(rt.collection, s))
    manifests, archived = [], []
    for shard in problems:
        if shard not in rebuild_manifests and not manifest_problem(rt, shard):
            continue
        if problems[shard] == "damaged":
            stamp = file_stamp()
            _leased(rt, shard, lambda s=shard, t=stamp: state.archive(s, t))
            archived.append(shard)
        elif state.store.exists(*_folder(rt, shard)):
            manifests.append(repair_shard(rt, shard))
    result = sync(rt, shards or None, check_index=True)
    return {"collection": rt.collection, "manifests_rebuilt": manifests,
            "manifests_archived": archived,
            "index_rebuilt": sorted(s for s, p in problems.items() if p),
            "index_problems": {s: p for s, p in problems.items() if p},
            "sync": result.summary(), "ok": result.ok}


def _leased(rt: Runtime, shard: str, action) -> None:
    lease = ShardLease(rt.store, rt.collection, shard)
    lease.acquire(rt.settings.lock_timeout_s)
    try:
        action()
    finally:
        lease.release()
