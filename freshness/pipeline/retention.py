"""Old collections after an alias swap: keep the newest N previously served, drop the rest.

Only collections this project's alias once served are candidates (recorded at each swap),
so a Qdrant server shared with other applications never loses theirs, and a collection
being built for a new model is never touched.
"""

from __future__ import annotations

import logging

from freshness.runtime import Runtime
from freshness.state import layout

log = logging.getLogger("freshness.pipeline.retention")


def record_swap_and_prune(rt: Runtime, previous: str | None, keep: int) -> list[str]:
    """Record that the alias left `previous`; drop served collections beyond the newest
    `keep` (index and state). Returns the dropped collection names."""
    history = (rt.store.read_json(*layout.SERVED_HISTORY_FILE) or {}).get("served", [])
    if previous:
        history = [c for c in history if c != previous] + [previous]
    serving = rt.index.resolve_alias(rt.settings.alias)
    old = [c for c in history if c != serving]
    dropped = old[:max(0, len(old) - keep)]
    for collection in dropped:
        rt.index.drop_collection(collection)
        rt.store.delete_tree(*layout.collection_dir(collection))
        log.info("dropped collection %s (keeping the %d newest previously served)",
                 collection, keep)
    rt.store.write_json({"served": [c for c in history if c not in dropped]},
                        *layout.SERVED_HISTORY_FILE)
    return dropped
