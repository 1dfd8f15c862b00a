"""One open qdrant-edge shard (a folder): the writes and reads a sync or a search makes on it.

In a folder shared by several corpus shards (`edge_folders`), a session stamps its shard on every
point it writes and filters every read, count and delete on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from freshness.index.base import UPSERT_BATCH, Hit, PointRecord, batched
from freshness.util.faults import fault_point

SCROLL_PAGE = 10_000


def shard_filter(shards: Sequence[str] | None):
    """A payload filter on the `shard` field (None: no filter)."""
    if not shards:
        return None
    from qdrant_edge import FieldCondition, Filter, MatchAny, MatchValue

    match = MatchValue(shards[0]) if len(shards) == 1 else MatchAny(list(shards))
    return Filter(must=[FieldCondition(key="shard", match=match)])


class EdgeShardSession:
    """Operations on one corpus shard in an open edge folder (`corpus_shard` filters reads and
    stamps writes when the folder holds several corpus shards)."""

    def __init__(self, shard, upsert_batch: int = UPSERT_BATCH,
                 corpus_shard: str | None = None) -> None:
        self._shard = shard
        self.upsert_batch = upsert_batch
        self._corpus_shard = corpus_shard
        self._filter = shard_filter([corpus_shard] if corpus_shard else None)

    def _owned(self, payload: dict) -> dict:
        """A point written through a shard's session belongs to that shard (its filter)."""
        if self._corpus_shard is None or payload.get("shard") == self._corpus_shard:
            return payload
        return {**payload, "shard": self._corpus_shard}

    def upsert(self, points: Sequence[PointRecord]) -> None:
        from qdrant_edge import Point, UpdateOperation

        for batch in batched(points, self.upsert_batch):
            self._shard.update(UpdateOperation.upsert_points(
                [Point(id=p.id, vector=np.asarray(p.vector, dtype=np.float32).tolist(),
                       payload=self._owned(p.payload)) for p in batch]
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

    def count(self) -> int:
        from qdrant_edge import CountRequest

        return int(self._shard.count(CountRequest(exact=True, filter=self._filter)))

    def query(self, vector: np.ndarray, limit: int, shard_filter=None) -> list[Hit]:
        from qdrant_edge import Query, QueryRequest

        points = self._shard.query(QueryRequest(
            limit=limit, query=Query.Nearest(np.asarray(vector, dtype=np.float32).tolist()),
            with_payload=True, filter=shard_filter if shard_filter is not None else self._filter,
        ))
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in points]
