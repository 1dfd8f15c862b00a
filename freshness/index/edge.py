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
import logging
import os
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from freshness.errors import FreshnessError, IndexBusyError, IndexDamagedError, StateError
from freshness.index.base import (
    UPSERT_BATCH,
    Hit,
    PointRecord,
    SearchResult,
    batched,
    merge_hits,
)
from freshness.util.disk import names_no_space, no_space_message
from freshness.util.faults import fault_point
from freshness.util.shard_names import is_valid_shard_name, shard_from_segment, shard_segment

SCROLL_PAGE = 10_000
log = logging.getLogger("freshness.index.edge")


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
            fault_point("index_write")

    def delete(self, ids: Iterable[str]) -> None:
        from qdrant_edge import UpdateOperation

        for batch in batched(list(ids), self.upsert_batch):
            self._shard.update(UpdateOperation.delete_points(list(batch)))
            fault_point("index_write")

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

    def _meta_dim(self, collection: str) -> int | None:
        """The collection's vector size from collection.json; None when missing or damaged."""
        meta = self._collection_dir(collection) / "collection.json"
        try:
            return int(json.loads(meta.read_text())["dim"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("unreadable %s (%s): it is rewritten by the next sync", meta, exc)
            return None

    def ensure_collection(self, collection: str, dim: int) -> None:
        meta = self._collection_dir(collection) / "collection.json"
        known = self._meta_dim(collection)
        if known is not None:
            if known != dim:
                raise StateError(
                    f"collection {collection!r} holds {known}-d vectors, not {dim}-d: a "
                    "different model needs a new collection (it gets one automatically)"
                )
            return
        meta.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(meta, json.dumps({"dim": dim}))

    def _dim(self, collection: str) -> int:
        dim = self._meta_dim(collection)
        if dim is None:
            raise StateError(f"collection {collection!r} has no readable collection.json in "
                             f"{self.root}: run `freshness sync` to write it")
        return dim

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
                if not _busy(exc):
                    raise IndexDamagedError(
                        f"embedded index folder {path} cannot be opened ({exc}): run "
                        f"`freshness repair --shard {path.name}` to rebuild it from the source"
                    ) from exc
                if time.monotonic() > deadline:
                    raise IndexBusyError(
                        f"embedded index folder {path} is held by another process for over "
                        f"{timeout_s:.0f}s: wait for the running sync, or use a Qdrant server "
                        "(FRESHNESS_QDRANT_URL) for concurrent access"
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    @contextlib.contextmanager
    def open_shard(self, collection: str, shard: str) -> Iterator[EdgeShardSession]:
        path = self._shard_dir(collection, shard)
        try:
            handle = self._open(path, self._dim(collection), True, self.lock_timeout_s)
        except IndexDamagedError as exc:
            if names_no_space(exc):
                raise StateError(no_space_message(path, exc, "create index shard")) from exc
            raise
        try:
            yield EdgeShardSession(handle, self.upsert_batch)
            handle.flush()
        except Exception as exc:
            if names_no_space(exc):  # the manifest is not committed: the next run redoes it
                raise StateError(no_space_message(path, exc, "write index shard")) from exc
            raise
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

    def shard_point_count(self, collection: str, shard: str) -> int:
        """Exact point count of a shard (0 when its folder is absent): the cheap probe."""
        from qdrant_edge import CountRequest

        handle = self._open(self._shard_dir(collection, shard), 0, False, self.lock_timeout_s)
        if handle is None:
            return 0
        try:
            return int(handle.count(CountRequest(exact=True)))
        except Exception as exc:  # noqa: BLE001 - qdrant-edge raises plain errors
            raise IndexDamagedError(f"embedded index shard {shard!r} cannot be counted "
                                    f"({exc}): run `freshness repair --shard {shard}`") from exc
        finally:
            handle.close()

    def drop_shard(self, collection: str, shard: str) -> None:
        """Delete every point of a shard (its folder; nothing when absent)."""
        shutil.rmtree(self._shard_dir(collection, shard), ignore_errors=True)

    def shard_names(self, collection: str) -> list[str]:
        folder = self._collection_dir(collection)
        if not folder.exists():
            return []
        return sorted(shard_from_segment(p.name) for p in folder.iterdir() if p.is_dir())

    def search(self, target: str, vector: np.ndarray, limit: int = 5,
               shards: Sequence[str] | None = None) -> SearchResult:
        collection = self.resolve_alias(target) or target
        hits: list[Hit] = []
        problems: dict[str, str] = {}
        for shard in shards or self.shard_names(collection):
            try:  # one shard busy, damaged or missing never hides the others' results
                handle = self._open(self._shard_dir(collection, shard), 0, False,
                                    min(self.lock_timeout_s, 10.0))
                if handle is None:
                    problems[shard] = (f"no index folder for shard {shard!r}: run "
                                       "`freshness sync` (or `freshness repair`) to rebuild it")
                    continue
                try:
                    hits.extend(EdgeShardSession(handle).query(vector, limit))
                finally:
                    handle.close()
            except FreshnessError as exc:
                problems[shard] = str(exc)
            except Exception as exc:  # noqa: BLE001 - qdrant-edge raises plain errors
                problems[shard] = (f"index shard {shard!r} cannot be searched ({exc}): run "
                                   f"`freshness repair --shard {shard}`")
        return SearchResult(merge_hits(hits, limit), collection, list(problems), problems)

    def _aliases_path(self) -> Path:
        return self.root / "aliases.json"

    def _aliases(self) -> dict[str, str]:
        """aliases.json; a damaged file reads as no alias (the next sync rewrites it)."""
        path = self._aliases_path()
        try:
            value = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("unreadable %s (%s): no alias until the next sync rewrites it", path, exc)
            return {}
        return value if isinstance(value, dict) else {}

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
    try:
        tmp.write_text(text)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if names_no_space(exc):
            raise StateError(no_space_message(path, exc)) from exc
        raise
    fault_point("alias_swap" if path.name == "aliases.json" else "collection_meta")
    os.replace(tmp, path)
