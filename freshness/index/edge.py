"""Embedded Qdrant: Qdrant's own engine in-process (qdrant-edge), one folder per shard.

Why one folder per shard: an edge shard is locked by the process that opens it, so runs of
different shards write different folders in parallel, and a search holds each folder only for
the milliseconds of one query. Writers open a folder only after embedding, for the write
phase; readers and writers that find a folder busy retry with backoff until `lock_timeout_s`.
Aliases live in `aliases.json`, replaced atomically, for blue/green model switches.
"""

from __future__ import annotations

import contextlib
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


def _busy(exc: Exception) -> bool:
    text = str(exc)
    return "WouldBlock" in text or "lock" in text.lower() or "already" in text.lower()


class EdgeShardSession:
    """Operations on one open edge shard."""

    def __init__(self, shard, upsert_batch: int = UPSERT_BATCH) -> None:
        self._shard = shard
        self.upsert_batch = upsert_batch

    def upsert(self, points: Sequence[PointRecord]) -> None:
        from qdrant_edge import Point, UpdateOperation

        for batch in batched(points, self.upsert_batch):
            self._shard.update(UpdateOperation.upsert_points(
                [Point(id=p.id, vector=np.asarray(p.vector, dtype=np.float32).tolist(),
                       payload=p.payload) for p in batch]
            ))
            fault_point("partial_upsert")

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
                ScrollRequest(offset=offset, limit=SCROLL_PAGE, with_payload=False,
                              with_vector=False)
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

    def query(self, vector: np.ndarray, limit: int) -> list[Hit]:
        from qdrant_edge import Query, QueryRequest

        points = self._shard.query(QueryRequest(
            limit=limit, query=Query.Nearest(np.asarray(vector, dtype=np.float32).tolist()),
            with_payload=True,
        ))
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in points]


class EdgeIndex:
    """Collections as folders of edge shards under `root`."""

    def __init__(self, root: str | Path, lock_timeout_s: float = 120.0,
                 upsert_batch: int = UPSERT_BATCH) -> None:
        self.root = Path(root).absolute()
        self.lock_timeout_s = lock_timeout_s
        self.upsert_batch = upsert_batch

    def _collection_dir(self, collection: str) -> Path:
        if not is_valid_shard_name(collection):
            raise StateError(f"unsafe collection name {collection!r}")
        return self.root / "collections" / shard_segment(collection)

    def _shard_dir(self, collection: str, shard: str) -> Path:
        if not is_valid_shard_name(shard):
            raise StateError(f"unsafe shard name {shard!r}: refusing to touch the index")
        return self._collection_dir(collection) / shard_segment(shard)

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
        _atomic_write(meta, json.dumps({"dim": dim}))

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
            yield EdgeShardSession(handle, self.upsert_batch)
            handle.flush()
        finally:
            handle.close()

    def shard_point_ids(self, collection: str, shard: str) -> set[str]:
        """Point ids of a shard, without creating anything (empty when absent)."""
        handle = self._open(self._shard_dir(collection, shard), 0, False, self.lock_timeout_s)
        if handle is None:
            return set()
        try:
            return EdgeShardSession(handle).point_ids()
        finally:
            handle.close()

    def shard_names(self, collection: str) -> list[str]:
        folder = self._collection_dir(collection)
        if not folder.exists():
            return []
        return sorted(shard_from_segment(p.name) for p in folder.iterdir() if p.is_dir())

    def search(self, target: str, vector: np.ndarray, limit: int = 5,
               shards: Sequence[str] | None = None) -> SearchResult:
        collection = self.resolve_alias(target) or target
        hits: list[Hit] = []
        skipped: list[str] = []
        for shard in shards or self.shard_names(collection):
            try:
                handle = self._open(self._shard_dir(collection, shard), 0, False,
                                    min(self.lock_timeout_s, 10.0))
            except IndexBusyError:
                skipped.append(shard)
                continue
            if handle is None:
                continue
            try:
                hits.extend(EdgeShardSession(handle).query(vector, limit))
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

    def close(self) -> None:
        """Nothing is held between operations."""


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    fault_point("alias_swap" if path.name == "aliases.json" else "collection_meta")
    os.replace(tmp, path)
