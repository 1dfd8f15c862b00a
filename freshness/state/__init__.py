"""Per-shard state: manifests, pending changes and history under one root (local or URI)."""
