"""retrieval-freshness: keep a RAG retrieval index fresh (orchestrator-free core)."""

__version__ = "0.1.0"
