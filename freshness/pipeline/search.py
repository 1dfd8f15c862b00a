"""Semantic search over the served collection (behind the alias)."""

from __future__ import annotations

from collections.abc import Sequence

from freshness.index.base import SearchResult
from freshness.runtime import Runtime


def search(rt: Runtime, query: str, limit: int = 5,
           shards: Sequence[str] | None = None) -> SearchResult:
    """Top `limit` chunks for `query`, each with its text and lineage payload."""
    vector = rt.embedder.encode([query])[0]
    return rt.index.search(rt.settings.alias, vector, limit, shards)
