"""The vector-index interface shared by the embedded and the server backends."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

UPSERT_BATCH = 1000  # points per request (Settings.upsert_batch)


@dataclass
class PointRecord:
    """A point to write: deterministic id, vector, lineage payload."""

    id: str
    vector: np.ndarray
    payload: dict


@dataclass
class Hit:
    """A search result."""

    id: str
    score: float
    payload: dict


@dataclass
class SearchResult:
    """Hits, and the shards left out (busy, damaged, missing) with the reason for each."""

    hits: list[Hit]
    collection: str | None
    skipped_shards: list[str] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)


class ShardSession(Protocol):
    """Writes and reads for one shard of one collection (opened by `VectorIndex.open_shard`)."""

    def upsert(self, points: Sequence[PointRecord]) -> None: ...

    def set_payload(self, updates: dict[str, dict]) -> None: ...

    def delete(self, ids: Iterable[str]) -> None: ...

    def point_ids(self) -> set[str]: ...

    def retrieve(self, ids: Sequence[str]) -> dict[str, dict]: ...


class VectorIndex(Protocol):
    """A Qdrant-backed index of collections, each split by shard, behind an alias."""

    def ensure_collection(self, collection: str, dim: int) -> None: ...

    def open_shard(self, collection: str, shard: str): ...  # context manager -> ShardSession

    def shard_point_ids(self, collection: str, shard: str) -> set[str]: ...

    def shard_point_count(self, collection: str, shard: str) -> int: ...

    def drop_shard(self, collection: str, shard: str) -> None: ...

    def search(self, target: str, vector: np.ndarray, limit: int = 5,
               shards: Sequence[str] | None = None) -> SearchResult: ...

    def resolve_alias(self, alias: str) -> str | None: ...

    def set_alias(self, alias: str, collection: str) -> None: ...

    def collections(self) -> list[str]: ...

    def drop_collection(self, collection: str) -> None: ...

    def close(self) -> None: ...


def batched(items: Sequence, size: int = UPSERT_BATCH) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def merge_hits(hits: list[Hit], limit: int) -> list[Hit]:
    return sorted(hits, key=lambda h: h.score, reverse=True)[:limit]
