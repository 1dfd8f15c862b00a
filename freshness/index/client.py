"""Qdrant through qdrant-client: a server or cluster by URL (production), or local mode.

One collection per model version; the shard is a payload field with a tenant index (Qdrant's
recommended multitenancy), and queries go through an alias that flips atomically when a new
model version is complete (blue/green). Calls are retried with exponential backoff.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

import numpy as np

from freshness.errors import FreshnessError
from freshness.index.base import Hit, PointRecord, SearchResult, batched

T = TypeVar("T")
log = logging.getLogger(__name__)
SCROLL_PAGE = 10_000


class QdrantUnavailableError(FreshnessError):
    """The Qdrant server kept failing after retries."""


def _retrying(call: Callable[[], T], what: str, retries: int, backoff_s: float) -> T:
    from qdrant_client.http.exceptions import UnexpectedResponse

    for attempt in range(retries + 1):
        try:
            return call()
        except UnexpectedResponse as exc:
            if exc.status_code is not None and exc.status_code < 500 and exc.status_code != 429:
                raise
            error: Exception = exc
        except (ConnectionError, TimeoutError, OSError) as exc:
            error = exc
        except Exception as exc:  # httpx / grpc transport errors
            if type(exc).__module__.split(".")[0] not in {"httpx", "httpcore", "grpc"}:
                raise
            error = exc
        if attempt == retries:
            raise QdrantUnavailableError(
                f"Qdrant {what} failed after {retries + 1} attempts ({error}): check "
                "FRESHNESS_QDRANT_URL and that the server is up; no state was advanced"
            ) from error
        delay = backoff_s * 2**attempt
        log.warning("qdrant %s failed (%s); retry %d in %.1fs", what, error, attempt + 1, delay)
        time.sleep(delay)
    raise AssertionError("unreachable")


def _shard_filter(shards: Sequence[str]):
    from qdrant_client import models

    return models.Filter(must=[models.FieldCondition(key="shard",
                                                     match=models.MatchAny(any=list(shards)))])


class ClientShardSession:
    """Operations on one shard's points of a collection."""

    def __init__(self, index: ClientIndex, collection: str, shard: str) -> None:
        self.index, self.collection, self.shard = index, collection, shard

    def upsert(self, points: Sequence[PointRecord]) -> None:
        from qdrant_client import models

        for batch in batched(points):
            structs = [models.PointStruct(id=p.id, payload=p.payload,
                                          vector=np.asarray(p.vector, np.float32).tolist())
                       for p in batch]
            self.index.call(lambda s=structs: self.index.client.upsert(
                self.collection, points=s, wait=True), "upsert")

    def set_payload(self, updates: dict[str, dict]) -> None:
        for point_id, payload in updates.items():
            self.index.call(lambda i=point_id, p=payload: self.index.client.set_payload(
                self.collection, payload=p, points=[i], wait=True), "set_payload")

    def delete(self, ids: Iterable[str]) -> None:
        from qdrant_client import models

        for batch in batched(list(ids)):
            selector = models.PointIdsList(points=list(batch))
            self.index.call(lambda s=selector: self.index.client.delete(
                self.collection, points_selector=s, wait=True), "delete")

    def point_ids(self) -> set[str]:
        ids: set[str] = set()
        offset = None
        while True:
            records, offset = self.index.call(lambda o=offset: self.index.client.scroll(
                self.collection, scroll_filter=_shard_filter([self.shard]), limit=SCROLL_PAGE,
                offset=o, with_payload=False, with_vectors=False), "scroll")
            ids.update(str(r.id) for r in records)
            if offset is None:
                return ids

    def retrieve(self, ids: Sequence[str]) -> dict[str, dict]:
        found: dict[str, dict] = {}
        for batch in batched(list(ids)):
            records = self.index.call(lambda b=batch: self.index.client.retrieve(
                self.collection, ids=list(b), with_payload=True, with_vectors=False), "retrieve")
            found.update({str(r.id): dict(r.payload or {}) for r in records})
        return found


class ClientIndex:
    """A Qdrant server/cluster (`url=`) or qdrant-client local mode (`path=` / `:memory:`)."""

    def __init__(self, url: str | None = None, api_key: str | None = None,
                 path: str | None = None, prefer_grpc: bool = False, timeout_s: int = 30,
                 retries: int = 4, backoff_s: float = 0.5, client=None) -> None:
        from qdrant_client import QdrantClient

        if client is not None:
            self.client = client
        elif url == ":memory:" or (url is None and path is None):
            self.client = QdrantClient(location=":memory:")
        elif url is not None:
            self.client = QdrantClient(url=url, api_key=api_key, prefer_grpc=prefer_grpc,
                                       timeout=timeout_s)
        else:
            self.client = QdrantClient(path=path)
        self.retries, self.backoff_s = retries, backoff_s

    def call(self, fn: Callable[[], T], what: str) -> T:
        return _retrying(fn, what, self.retries, self.backoff_s)

    def ensure_collection(self, collection: str, dim: int) -> None:
        from qdrant_client import models

        if self.call(lambda: self.client.collection_exists(collection), "collection_exists"):
            return
        self.call(lambda: self.client.create_collection(
            collection, vectors_config=models.VectorParams(size=dim,
                                                           distance=models.Distance.COSINE)),
            "create_collection")
        for field, tenant in (("shard", True), ("doc_id", False)):
            schema = models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD,
                                               is_tenant=tenant)
            self.call(lambda f=field, s=schema: self.client.create_payload_index(
                collection, field_name=f, field_schema=s), "create_payload_index")

    @contextlib.contextmanager
    def open_shard(self, collection: str, shard: str) -> Iterator[ClientShardSession]:
        yield ClientShardSession(self, collection, shard)

    def shard_point_ids(self, collection: str, shard: str) -> set[str]:
        """Point ids of a shard (empty when the collection does not exist yet)."""
        if not self.call(lambda: self.client.collection_exists(collection), "collection_exists"):
            return set()
        return ClientShardSession(self, collection, shard).point_ids()

    def search(self, target: str, vector: np.ndarray, limit: int = 5,
               shards: Sequence[str] | None = None) -> SearchResult:
        collection = self.resolve_alias(target) or target
        if not self.call(lambda: self.client.collection_exists(target), "collection_exists"):
            return SearchResult([], None)
        response = self.call(lambda: self.client.query_points(
            target, query=np.asarray(vector, np.float32).tolist(), limit=limit,
            query_filter=_shard_filter(shards) if shards else None, with_payload=True), "query")
        hits = [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in response.points]
        return SearchResult(hits, collection)

    def resolve_alias(self, alias: str) -> str | None:
        aliases = self.call(lambda: self.client.get_aliases(), "get_aliases").aliases
        return next((a.collection_name for a in aliases if a.alias_name == alias), None)

    def set_alias(self, alias: str, collection: str) -> None:
        from qdrant_client import models

        operations = []
        if self.resolve_alias(alias):
            operations.append(models.DeleteAliasOperation(
                delete_alias=models.DeleteAlias(alias_name=alias)))
        operations.append(models.CreateAliasOperation(create_alias=models.CreateAlias(
            collection_name=collection, alias_name=alias)))
        self.call(lambda: self.client.update_collection_aliases(
            change_aliases_operations=operations), "update_collection_aliases")

    def collections(self) -> list[str]:
        response = self.call(lambda: self.client.get_collections(), "get_collections")
        return sorted(c.name for c in response.collections)

    def drop_collection(self, collection: str) -> None:
        self.call(lambda: self.client.delete_collection(collection), "delete_collection")

    def close(self) -> None:
        self.client.close()
