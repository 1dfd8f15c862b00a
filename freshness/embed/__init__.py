"""Model identity (name, revision, limits), token-aware chunking, and the embedding backends."""
