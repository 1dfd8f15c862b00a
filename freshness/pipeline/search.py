"""Semantic search over the served collection (behind the alias)."""

from __future__ import annotations

from collections.abc import Sequence

from freshness.index.base import SearchResult
from freshness.runtime import Runtime


def search(rt: Runtime, query: str, limit: int = 5,
           shards: Sequence[str] | None = None) -> SearchResult:
    """Top `limit` chunks for `query`, each with its text and lineage payload.

    Searches the shards committed in the served collection (or `shards`), so a committed
    shard whose index is missing or damaged is named in `problems`, never silently empty.
    """
    vector = rt.embedder.encode([query])[0]
    serving = rt.serving_collection()
    if not shards and serving:
        shards = rt.shard_state(serving).shards() or None
    return rt.index.search(rt.settings.alias, vector, limit, shards)
