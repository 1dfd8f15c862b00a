"""Embedded Qdrant: Qdrant's own engine in-process (qdrant-edge), corpus shards in edge folders.

An edge shard (a folder) is locked by the process that opens it and preallocates ~145 MiB
(sparse: WAL segments, vector and payload pages), so one folder per corpus shard cannot hold
10 k shards, and a search would open every one. New collections therefore hash corpus shards
into a fixed number of folders (`edge_folders`, default 16) and keep the shard as an indexed
payload field that reads, counts and searches filter on — the same model as the Qdrant server
backend (one collection, shard as a tenant field). Runs of shards in different folders write in
parallel; two in one folder take turns for their write phases. Collections created before this
(no `folders` in collection.json) keep one folder per shard.

Writers open a folder only after embedding, for the write phase; readers and writers that find
a folder busy retry with backoff until `lock_timeout_s`. Aliases live in `aliases.json`,
replaced atomically, for blue/green model switches.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from freshness.errors import IndexBusyError, StateError
from freshness.index.base import (
    UPSERT_BATCH,
    Hit,
    PointRecord,
    SearchResult,
    batched,
    merge_hits,
)
from freshness.util.faults import fault_point
from freshness.util.shard_names import is_valid_shard_name, shard_from_segment, shard_segment

SCROLL_PAGE = 10_000
DEFAULT_FOLDERS = 16


def _busy(exc: Exception) -> bool:
    text = str(exc)
    return "WouldBlock" in text or "lock" in text.lower() or "already" in text.lower()


def _shard_filter(shards: Sequence[str] | None):
    """A payload filter on the `shard` field (None: no filter)."""
    if not shards:
        return None
    from qdrant_edge import FieldCondition, Filter, MatchAny, MatchValue

    match = MatchValue(shards[0]) if len(shards) == 1 else MatchAny(list(shards))
    return Filter(must=[FieldCondition(key="shard", match=match)])


class EdgeShardSession:
    """Operations on one corpus shard in an open edge folder (`shard` filters reads when the
    folder holds several corpus shards)."""

    def __init__(self, shard, upsert_batch: int = UPSERT_BATCH,
                 corpus_shard: str | None = None) -> None:
        self._shard = shard
        self.upsert_batch = upsert_batch
        self._corpus_shard = corpus_shard
        self._filter = _shard_filter([corpus_shard] if corpus_shard else None)

    def upsert(self, points: Sequence[PointRecord]) -> None:
        from qdrant_edge import Point, UpdateOperation

        for batch in batched(points, self.upsert_batch):
            self._shard.update(UpdateOperation.upsert_points(
                [Point(id=p.id, vector=np.asarray(p.vector, dtype=np.float32).tolist(),
                       payload=self._owned(p.payload)) for p in batch]
            ))
            fault_point("partial_upsert")

    def _owned(self, payload: dict) -> dict:
        """A point written through a shard's session belongs to that shard (its filter)."""
        if self._corpus_shard is None or payload.get("shard") == self._corpus_shard:
            return payload
        return {**payload, "shard": self._corpus_shard}

    def set_payload(self, updates: dict[str, dict]) -> None:
        from qdrant_edge import UpdateOperation

        for point_id, payload in updates.items():
            self._shard.update(UpdateOperation.set_payload([point_id], payload))

    def delete(self, ids: Iterable[str]) -> None:
        from qdrant_edge import UpdateOperation

        for batch in batched(list(ids), self.upsert_batch):
            self._shard.update(UpdateOperation.delete_points(list(batch)))

    def point_ids(self) -> set[str]:
        from qdrant_edge import ScrollRequest

        ids: set[str] = set()
        offset = None
        while True:
            records, offset = self._shard.scroll(
                ScrollRequest(offset=offset, limit=SCROLL_PAGE, filter=self._filter,
                              with_payload=False, with_vector=False)
            )
            ids.update(str(r.id) for r in records)
            if offset is None:
                return ids

    def retrieve(self, ids: Sequence[str]) -> dict[str, dict]:
        found: dict[str, dict] = {}
        for batch in batched(list(ids), self.upsert_batch):
            for record in self._shard.retrieve(list(batch), True, False):
                found[str(record.id)] = dict(record.payload or {})
        return found

    def query(self, vector: np.ndarray, limit: int, shard_filter=None) -> list[Hit]:
        from qdrant_edge import Query, QueryRequest

        points = self._shard.query(QueryRequest(
            limit=limit, query=Query.Nearest(np.asarray(vector, dtype=np.float32).tolist()),
            with_payload=True, filter=shard_filter if shard_filter is not None else self._filter,
        ))
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in points]


class EdgeIndex:
    """Collections as folders of edge shards under `root`."""

    def __init__(self, root: str | Path, lock_timeout_s: float = 120.0,
                 upsert_batch: int = UPSERT_BATCH, folders: int = DEFAULT_FOLDERS) -> None:
        self.root = Path(root).absolute()
        self.lock_timeout_s = lock_timeout_s
        self.upsert_batch = upsert_batch
        self.folders = folders
        self._meta: dict[str, dict] = {}

    def _collection_dir(self, collection: str) -> Path:
        if not is_valid_shard_name(collection):
            raise StateError(f"unsafe collection name {collection!r}")
        return self.root / "collections" / shard_segment(collection)

    def _shard_dir(self, collection: str, shard: str) -> Path:
        """The edge folder holding a corpus shard: its hash bucket, or (older collections)
        a folder of its own."""
        if not is_valid_shard_name(shard):
            raise StateError(f"unsafe shard name {shard!r}: refusing to touch the index")
        folders = self._folders(collection)
        if folders is None:
            return self._collection_dir(collection) / shard_segment(shard)
        return self._collection_dir(collection) / _bucket(shard, folders)

    def _folders(self, collection: str) -> int | None:
        """How many folders the collection hashes shards into (None: one per shard)."""
        if collection not in self._meta:
            meta = self._collection_dir(collection) / "collection.json"
            if not meta.exists():
                return self.folders  # created with the current layout when first written
            self._meta[collection] = json.loads(meta.read_text())
        folders = self._meta[collection].get("folders")
        return int(folders) if folders else None

    def _session(self, handle, collection: str, shard: str) -> EdgeShardSession:
        shared = self._folders(collection) is not None
        return EdgeShardSession(handle, self.upsert_batch, shard if shared else None)

    def ensure_collection(self, collection: str, dim: int) -> None:
        meta = self._collection_dir(collection) / "collection.json"
        if meta.exists():
            known = json.loads(meta.read_text())["dim"]
            if known != dim:
                raise StateError(
                    f"collection {collection!r} holds {known}-d vectors, not {dim}-d: a "
                    "different model needs a new collection (it gets one automatically)"
                )
            return
        meta.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(meta, json.dumps({"dim": dim, "folders": self.folders}))
        self._meta.pop(collection, None)

    def _dim(self, collection: str) -> int:
        meta = self._collection_dir(collection) / "collection.json"
        if not meta.exists():
            raise StateError(f"collection {collection!r} does not exist in {self.root}")
        return int(json.loads(meta.read_text())["dim"])

    def _open(self, path: Path, dim: int, create: bool, timeout_s: float):
        from qdrant_edge import (
            Distance,
            EdgeConfig,
            EdgeShard,
            EdgeVectorParams,
            PayloadSchemaType,
            UpdateOperation,
        )

        deadline, delay = time.monotonic() + timeout_s, 0.05
        while True:
            try:
                if (path / "wal").exists() or (path / "segments").exists():
                    return EdgeShard.load(str(path))
                if not create:
                    return None
                config = EdgeConfig(vectors=EdgeVectorParams(size=dim, distance=Distance.Cosine))
                shard = EdgeShard.create(str(path), config)
                for field in ("doc_id", "shard"):
                    shard.update(
                        UpdateOperation.create_field_index(field, PayloadSchemaType.Keyword))
                return shard
            except Exception as exc:  # noqa: BLE001 - qdrant-edge raises plain errors
                if not _busy(exc) or time.monotonic() > deadline:
                    if _busy(exc):
                        raise IndexBusyError(
                            f"embedded index folder {path} is held by another process for over "
                            f"{timeout_s:.0f}s: wait for the running sync, or use a Qdrant server "
                            "(FRESHNESS_QDRANT_URL) for concurrent access"
                        ) from exc
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    @contextlib.contextmanager
    def open_shard(self, collection: str, shard: str) -> Iterator[EdgeShardSession]:
        path = self._shard_dir(collection, shard)
        handle = self._open(path, self._dim(collection), True, self.lock_timeout_s)
        try:
            yield self._session(handle, collection, shard)
            handle.flush()
        finally:
            handle.close()

    def shard_point_ids(self, collection: str, shard: str) -> set[str]:
        """Point ids of a shard, without creating anything (empty when absent)."""
        handle = self._open(self._shard_dir(collection, shard), 0, False, self.lock_timeout_s)
        if handle is None:
            return set()
        try:
            return self._session(handle, collection, shard).point_ids()
        finally:
            handle.close()

    def folder_names(self, collection: str) -> list[str]:
        """The edge folders of a collection (shard names in the one-folder-per-shard layout)."""
        folder = self._collection_dir(collection)
        if not folder.exists():
            return []
        return sorted(shard_from_segment(p.name) for p in folder.iterdir() if p.is_dir())

    def shard_names(self, collection: str) -> list[str]:
        """Corpus shards that have points in the index (a facet on `shard` per shared
        folder; folder names in the one-folder-per-shard layout)."""
        if self._folders(collection) is None:
            return self.folder_names(collection)
        from qdrant_edge import FacetRequest

        names: set[str] = set()
        for folder in self.folder_names(collection):
            handle = self._open(self._collection_dir(collection) / folder, 0, False,
                                self.lock_timeout_s)
            if handle is None:
                continue
            try:
                hits = handle.facet(FacetRequest("shard", limit=1_000_000, exact=True)).hits
                names.update(str(h.value) for h in hits if h.count)
            finally:
                handle.close()
        return sorted(names)

    def search(self, target: str, vector: np.ndarray, limit: int = 5,
               shards: Sequence[str] | None = None) -> SearchResult:
        """Top hits over the collection (or some shards): one query per edge folder."""
        collection = self.resolve_alias(target) or target
        groups: dict[Path, tuple[list[str], object]] = {}
        if self._folders(collection) is None:  # one folder per shard: no filter needed
            for shard in shards or self.folder_names(collection):
                groups[self._shard_dir(collection, shard)] = ([shard], None)
        elif shards:
            by_folder: dict[Path, list[str]] = {}
            for shard in shards:
                by_folder.setdefault(self._shard_dir(collection, shard), []).append(shard)
            groups = {f: (names, _shard_filter(names)) for f, names in by_folder.items()}
        else:
            for name in self.folder_names(collection):
                groups[self._collection_dir(collection) / name] = ([name], None)
        hits: list[Hit] = []
        skipped: list[str] = []
        for folder, (names, shard_filter) in groups.items():
            try:
                handle = self._open(folder, 0, False, min(self.lock_timeout_s, 10.0))
            except IndexBusyError:
                skipped.extend(names)
                continue
            if handle is None:
                continue
            try:
                hits.extend(EdgeShardSession(handle).query(vector, limit, shard_filter))
            finally:
                handle.close()
        return SearchResult(merge_hits(hits, limit), collection, skipped)

    def _aliases_path(self) -> Path:
        return self.root / "aliases.json"

    def _aliases(self) -> dict[str, str]:
        path = self._aliases_path()
        return json.loads(path.read_text()) if path.exists() else {}

    def resolve_alias(self, alias: str) -> str | None:
        return self._aliases().get(alias)

    def set_alias(self, alias: str, collection: str) -> None:
        aliases = self._aliases()
        aliases[alias] = collection
        self.root.mkdir(parents=True, exist_ok=True)
        _atomic_write(self._aliases_path(), json.dumps(aliases, indent=2, sort_keys=True))

    def collections(self) -> list[str]:
        folder = self.root / "collections"
        return sorted(p.name for p in folder.iterdir()) if folder.exists() else []

    def drop_collection(self, collection: str) -> None:
        if collection in self._aliases().values():
            raise StateError(f"collection {collection!r} is behind an alias: switch it first")
        shutil.rmtree(self._collection_dir(collection), ignore_errors=True)
        self._meta.pop(collection, None)

    def close(self) -> None:
        """Nothing is held between operations."""


def _bucket(shard: str, folders: int) -> str:
    """The folder a shard hashes to (stable across processes and Python versions)."""
    digest = int.from_bytes(hashlib.blake2b(shard.encode(), digest_size=8).digest(), "big")
    return f"f{digest % folders:03d}"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    fault_point("alias_swap" if path.name == "aliases.json" else "collection_meta")
    os.replace(tmp, path)
