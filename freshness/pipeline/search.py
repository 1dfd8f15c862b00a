"""Semantic search over the served collection (behind the alias)."""

from __future__ import annotations

from collections.abc import Sequence

from freshness.errors import FreshnessError
from freshness.index.base import SearchResult
from freshness.runtime import Runtime


class EmptyIndexError(FreshnessError):
    """Nothing has been indexed yet, so there is nothing to search."""


def search(rt: Runtime, query: str, limit: int = 5,
           shards: Sequence[str] | None = None) -> SearchResult:
    """Top `limit` chunks for `query`, each with its text and lineage payload. Raises
    EmptyIndexError (before loading the model) when no collection is served yet.

    Searches the shards committed in the served collection (or `shards`), so a committed
    shard whose index is missing or damaged is named in `problems`, never silently empty.
    """
    alias = rt.settings.alias
    serving = rt.index.resolve_alias(alias)
    if serving is None and alias not in rt.index.collections():
        where = rt.settings.qdrant_url or rt.settings.index_path
        raise EmptyIndexError(f"the index at {where} is empty (no collection behind alias "
                              f"{alias!r}): run `freshness sync` first")
    vector = rt.embedder.encode([query])[0]
    if not shards and serving:
        shards = rt.shard_state(serving).shards() or None
    return rt.index.search(alias, vector, limit, shards)
