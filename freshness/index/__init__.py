"""Vector index backends: embedded Qdrant (qdrant-edge) by default, qdrant-client by URL."""

from freshness.index.base import Hit, PointRecord, SearchResult, VectorIndex
from freshness.index.client import ClientIndex, QdrantUnavailableError
from freshness.index.edge import EdgeIndex

__all__ = [
    "ClientIndex",
    "EdgeIndex",
    "Hit",
    "PointRecord",
    "QdrantUnavailableError",
    "SearchResult",
    "VectorIndex",
]
