"""Qdrant through qdrant-client: a server or cluster by URL (production), or local mode.

One collection per model version; the shard is a payload field with a tenant index (Qdrant's
recommended multitenancy), and queries go through an alias that flips atomically when a new
model version is complete (blue/green). Calls are retried with exponential backoff.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

import numpy as np

from freshness.errors import FreshnessError
from freshness.index.base import UPSERT_BATCH, Hit, PointRecord, SearchResult, batched

T = TypeVar("T")
log = logging.getLogger(__name__)
SCROLL_PAGE = 10_000


class QdrantUnavailableError(FreshnessError):
    """The Qdrant server kept failing after retries."""


_RETRIED_GRPC_CODES = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED"}


def _transient(exc: Exception) -> tuple[bool, float | None]:
    """(retry?, server-advised wait) for an error raised by qdrant-client."""
    from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    if isinstance(exc, ResourceExhaustedResponse):
        return True, float(exc.retry_after_s)
    if isinstance(exc, UnexpectedResponse):
        code = exc.status_code
        return code is None or code >= 500 or code == 429, None
    if isinstance(exc, (ResponseHandlingException, ConnectionError, TimeoutError, OSError)):
        return True, None
    module = type(exc).__module__.split(".")[0]
    if module == "grpc":
        code = getattr(exc, "code", lambda: None)()
        return getattr(code, "name", "") in _RETRIED_GRPC_CODES, None
    return module in {"httpx", "httpcore"}, None


def _retrying(call: Callable[[], T], what: str, retries: int, backoff_s: float,
              max_backoff_s: float = 30.0) -> T:
    """Call with exponential backoff (full jitter) on transient errors only."""
    for attempt in range(retries + 1):
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - classified below
            retry, advised = _transient(exc)
            if not retry:
                raise
            if attempt == retries:
                raise QdrantUnavailableError(
                    f"Qdrant {what} failed after {retries + 1} attempts ({exc}): check "
                    "FRESHNESS_QDRANT_URL and that the server is up; no state was advanced"
                ) from exc
            delay = advised if advised is not None else \
                random.uniform(0, min(max_backoff_s, backoff_s * 2**attempt))
            log.warning("qdrant %s failed (%s); retry %d in %.1fs", what, exc, attempt + 1, delay)
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

        for batch in batched(points, self.index.upsert_batch):
            structs = [models.PointStruct(id=p.id, payload=p.payload,
                                          vector=np.asarray(p.vector, np.float32).tolist())
                       for p in batch]
            self.index.call(lambda s=structs: self.index.client.upsert(
                self.collection, points=s, wait=True), "upsert")

    def set_payload(self, updates: dict[str, dict]) -> None:
        from qdrant_client import models

        operations = [models.SetPayloadOperation(set_payload=models.SetPayload(
            payload=payload, points=[point_id])) for point_id, payload in updates.items()]
        for batch in batched(operations, self.index.upsert_batch):
            self.index.call(lambda b=batch: self.index.client.batch_update_points(
                self.collection, update_operations=list(b), wait=True), "set_payload")

    def delete(self, ids: Iterable[str]) -> None:
        from qdrant_client import models

        for batch in batched(list(ids), self.index.upsert_batch):
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
        for batch in batched(list(ids), self.index.upsert_batch):
            records = self.index.call(lambda b=batch: self.index.client.retrieve(
                self.collection, ids=list(b), with_payload=True, with_vectors=False), "retrieve")
            found.update({str(r.id): dict(r.payload or {}) for r in records})
        return found


class ClientIndex:
    """A Qdrant server/cluster (`url=`) or qdrant-client local mode (`path=` / `:memory:`)."""

    def __init__(self, url: str | None = None, api_key: str | None = None,
                 path: str | None = None, prefer_grpc: bool = False, timeout_s: int = 30,
                 retries: int = 6, backoff_s: float = 1.0, client=None,
                 grpc_port: int = 6334, replication_factor: int | None = None,
                 shard_number: int | None = None, upsert_batch: int = UPSERT_BATCH) -> None:
        from qdrant_client import QdrantClient

        if client is not None:
            self.client = client
        elif url == ":memory:" or (url is None and path is None):
            self.client = QdrantClient(location=":memory:")
        elif url is not None:
            self.client = QdrantClient(url=url, api_key=api_key, prefer_grpc=prefer_grpc,
                                       grpc_port=grpc_port, timeout=timeout_s)
        else:
            self.client = QdrantClient(path=path)
        self.retries, self.backoff_s = retries, backoff_s
        self.replication_factor, self.shard_number = replication_factor, shard_number
        self.upsert_batch = upsert_batch

    def call(self, fn: Callable[[], T], what: str) -> T:
        return _retrying(fn, what, self.retries, self.backoff_s)

    def ensure_collection(self, collection: str, dim: int) -> None:
        from qdrant_client import models
        from qdrant_client.http.exceptions import UnexpectedResponse

        if self.call(lambda: self.client.collection_exists(collection), "collection_exists"):
            return
        try:
            self.call(lambda: self.client.create_collection(
                collection, on_disk_payload=True, replication_factor=self.replication_factor,
                shard_number=self.shard_number,
                vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE)),
                "create_collection")
        except UnexpectedResponse as exc:  # another shard run created it first
            if not self.client.collection_exists(collection):
                raise
            log.info("collection %s was created concurrently (%s)", collection, exc)
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

    def shard_point_count(self, collection: str, shard: str) -> int:
        """Exact point count of a shard (0 when the collection does not exist): the probe."""
        if not self.call(lambda: self.client.collection_exists(collection), "collection_exists"):
            return 0
        return int(self.call(lambda: self.client.count(
            collection, count_filter=_shard_filter([shard]), exact=True), "count").count)

    def drop_shard(self, collection: str, shard: str) -> None:
        """Delete every point of a shard (a retired shard's points)."""
        from qdrant_client import models

        if not self.call(lambda: self.client.collection_exists(collection), "collection_exists"):
            return
        selector = models.FilterSelector(filter=_shard_filter([shard]))
        self.call(lambda: self.client.delete(collection, points_selector=selector, wait=True),
                  "delete")

    def search(self, target: str, vector: np.ndarray, limit: int = 5,
               shards: Sequence[str] | None = None) -> SearchResult:
        collection = self.resolve_alias(target) or target
        if not self.call(lambda: self.client.collection_exists(collection),
                         "collection_exists"):
            return SearchResult([], None)
        response = self.call(lambda: self.client.query_points(
            collection, query=np.asarray(vector, np.float32).tolist(), limit=limit,
            query_filter=_shard_filter(shards) if shards else None, with_payload=True), "query")
        hits = [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in response.points]
        return SearchResult(hits, collection)

    def resolve_alias(self, alias: str) -> str | None:
        aliases = self.call(lambda: self.client.get_aliases(), "get_aliases").aliases
        return next((a.collection_name for a in aliases if a.alias_name == alias), None)

    def set_alias(self, alias: str, collection: str) -> None:
        """Point `alias` at `collection` in one atomic alias update (retried as a whole)."""
        from qdrant_client import models

        def switch() -> None:
            current = next((a.collection_name for a in self.client.get_aliases().aliases
                            if a.alias_name == alias), None)
            if current == collection:
                return
            operations = []
            if current:
                operations.append(models.DeleteAliasOperation(
                    delete_alias=models.DeleteAlias(alias_name=alias)))
            operations.append(models.CreateAliasOperation(create_alias=models.CreateAlias(
                collection_name=collection, alias_name=alias)))
            self.client.update_collection_aliases(change_aliases_operations=operations)

        self.call(switch, "update_collection_aliases")

    def collections(self) -> list[str]:
        response = self.call(lambda: self.client.get_collections(), "get_collections")
        return sorted(c.name for c in response.collections)

    def drop_collection(self, collection: str) -> None:
        self.call(lambda: self.client.delete_collection(collection), "delete_collection")

    def close(self) -> None:
        self.client.close()
