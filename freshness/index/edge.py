"""Embedded Qdrant: Qdrant's own engine in-process (qdrant-edge), corpus shards in edge folders.

An edge shard (a folder) is locked by the process that opens it and preallocates ~145 MiB
(sparse: WAL segments, vector and payload pages), so one folder per corpus shard cannot hold
10 k shards, and a search would open every one. With `edge_folders=N` (FRESHNESS_EDGE_FOLDERS)
a new collection hashes corpus shards into N folders and keeps the shard as an indexed payload
field that reads, counts, deletes and searches filter on — the model of the Qdrant server
backend (one collection, the shard a tenant field). Runs of shards in different folders write
in parallel; two in one folder take turns for their write phases. The default (0) and every
collection created without `folders` in collection.json keep one folder per shard: most
parallel, fine up to a few hundred shards.

Writers open a folder only after embedding, for the write phase; readers and writers that find
a folder busy retry with backoff until `lock_timeout_s`. Aliases live in `aliases.json`,
replaced atomically, for blue/green model switches.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from freshness.errors import FreshnessError, IndexBusyError, IndexDamagedError, StateError
from freshness.index.base import (
    UPSERT_BATCH,
    Hit,
    SearchResult,
    merge_hits,
)
from freshness.index.edge_session import EdgeShardSession, shard_filter
from freshness.util.disk import names_no_space, no_space_message
from freshness.util.faults import fault_point
from freshness.util.shard_names import is_valid_shard_name, shard_from_segment, shard_segment

DEFAULT_FOLDERS = 0  # one folder per shard
_FOLDER_NAME = re.compile(r"f\d{3}")
log = logging.getLogger("freshness.index.edge")


def _busy(exc: Exception) -> bool:
    text = str(exc)
    return "WouldBlock" in text or "lock" in text.lower() or "already" in text.lower()


class EdgeIndex:
    """Collections as folders of edge shards under `root`."""

    def __init__(self, root: str | Path, lock_timeout_s: float = 120.0,
                 upsert_batch: int = UPSERT_BATCH, folders: int = DEFAULT_FOLDERS) -> None:
        self.root = Path(root).absolute()
        self.lock_timeout_s = lock_timeout_s
        self.upsert_batch = upsert_batch
        self.folders = folders
        self._layout: dict[str, int | None] = {}

    def _collection_dir(self, collection: str) -> Path:
        if not is_valid_shard_name(collection):
            raise StateError(f"unsafe collection name {collection!r}")
        return self.root / "collections" / shard_segment(collection)

    def _shard_dir(self, collection: str, shard: str) -> Path:
        """The edge folder holding a corpus shard: its hash folder, or (collections made
        before shared folders) a folder of its own."""
        if not is_valid_shard_name(shard):
            raise StateError(f"unsafe shard name {shard!r}: refusing to touch the index")
        folders = self._folders(collection)
        if folders is None:
            return self._collection_dir(collection) / shard_segment(shard)
        return self._collection_dir(collection) / _folder_of(shard, folders)

    def _folders(self, collection: str) -> int | None:
        """How many folders the collection hashes shards into (None: one per shard)."""
        if collection in self._layout:
            return self._layout[collection]
        meta = self._collection_dir(collection) / "collection.json"
        try:
            folders = json.loads(meta.read_text()).get("folders")
        except (OSError, ValueError, AttributeError):  # missing or damaged: infer from disk
            return self._inferred_folders(collection)
        self._layout[collection] = int(folders) if folders else None
        return self._layout[collection]

    def _inferred_folders(self, collection: str) -> int | None:
        """Without a readable collection.json: the configured layout, unless per-shard folders
        exist (a damaged file of an older collection must not switch its layout)."""
        folder = self._collection_dir(collection)
        names = [p.name for p in folder.iterdir() if p.is_dir()] if folder.exists() else []
        if not self.folders or any(not _FOLDER_NAME.fullmatch(n) for n in names):
            return None
        return self.folders

    def _session(self, handle, collection: str, shard: str) -> EdgeShardSession:
        shared = self._folders(collection) is not None
        return EdgeShardSession(handle, self.upsert_batch, shard if shared else None)

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
        folders = self._inferred_folders(collection)
        meta.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(meta, json.dumps({"dim": dim, "folders": folders} if folders
                                       else {"dim": dim}))
        self._layout.pop(collection, None)

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
            yield self._session(handle, collection, shard)
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
            return self._session(handle, collection, shard).point_ids()
        finally:
            handle.close()

    def shard_point_count(self, collection: str, shard: str) -> int:
        """Exact point count of a shard (0 when its folder is absent): the cheap probe."""
        handle = self._open(self._shard_dir(collection, shard), 0, False, self.lock_timeout_s)
        if handle is None:
            return 0
        try:
            return self._session(handle, collection, shard).count()
        except Exception as exc:  # noqa: BLE001 - qdrant-edge raises plain errors
            raise IndexDamagedError(f"embedded index shard {shard!r} cannot be counted "
                                    f"({exc}): run `freshness repair --shard {shard}`") from exc
        finally:
            handle.close()

    def drop_shard(self, collection: str, shard: str) -> None:
        """Delete every point of a shard (by filter in a shared folder, else its folder)."""
        if self._folders(collection) is None:
            shutil.rmtree(self._shard_dir(collection, shard), ignore_errors=True)
            return
        from qdrant_edge import UpdateOperation

        try:
            handle = self._open(self._shard_dir(collection, shard), 0, False, self.lock_timeout_s)
        except IndexDamagedError:  # derived data: the folder-mates are re-embedded by the probe
            shutil.rmtree(self._shard_dir(collection, shard), ignore_errors=True)
            return
        if handle is None:
            return
        try:
            handle.update(UpdateOperation.delete_points_by_filter(shard_filter([shard])))
            handle.flush()
        finally:
            handle.close()

    def folder_names(self, collection: str) -> list[str]:
        """The edge folders of a collection (shard names in the one-folder-per-shard layout)."""
        folder = self._collection_dir(collection)
        if not folder.exists():
            return []
        return sorted(shard_from_segment(p.name) for p in folder.iterdir() if p.is_dir())

    def shard_names(self, collection: str) -> list[str]:
        """Corpus shards with points in the index (a facet on `shard` per shared folder;
        the folder names in the one-folder-per-shard layout)."""
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
            groups = {f: (names, shard_filter(names)) for f, names in by_folder.items()}
        else:
            for name in self.folder_names(collection):
                groups[self._collection_dir(collection) / name] = ([name], None)
        hits: list[Hit] = []
        problems: dict[str, str] = {}
        for folder, (names, only) in groups.items():
            label = ", ".join(names)
            try:  # one folder busy, damaged or missing never hides the others' results
                handle = self._open(folder, 0, False, min(self.lock_timeout_s, 10.0))
                if handle is None:
                    problems.update({n: f"no index folder for shard {n!r}: run `freshness "
                                        "sync` (or `freshness repair`) to rebuild it"
                                     for n in names})
                    continue
                try:
                    hits.extend(EdgeShardSession(handle).query(vector, limit, only))
                finally:
                    handle.close()
            except FreshnessError as exc:
                problems.update({n: str(exc) for n in names})
            except Exception as exc:  # noqa: BLE001 - qdrant-edge raises plain errors
                problems.update({n: f"index folder {folder.name} ({label}) cannot be searched "
                                    f"({exc}): run `freshness repair --shard {n}`"
                                 for n in names})
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
        self._layout.pop(collection, None)

    def close(self) -> None:
        """Nothing is held between operations."""


def _folder_of(shard: str, folders: int) -> str:
    """The shared folder a shard hashes to (stable across processes and Python versions)."""
    digest = int.from_bytes(hashlib.blake2b(shard.encode(), digest_size=8).digest(), "big")
    return f"f{digest % folders:03d}"


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
