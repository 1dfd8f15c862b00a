"""Fault injection for the crash-consistency tests: die at a named point, as a crash would.

`FRESHNESS_FAULT=<name>` kills the process with SIGKILL the first time `fault_point(name)` is
reached; `FRESHNESS_FAULT=<name>:N` on the N-th time. Unset (production), a call costs one
environment lookup. Points: after_chunking, mid_embedding, partial_upsert, before_manifest,
mid_manifest, alias_swap, collection_meta (see docs/reliability.md).
"""

from __future__ import annotations

import os
import signal

FAULT_VAR = "FRESHNESS_FAULT"
_hits: dict[str, int] = {}


def fault_point(name: str) -> None:
    """SIGKILL this process here when FRESHNESS_FAULT names this point (and hit count)."""
    spec = os.environ.get(FAULT_VAR)
    if not spec:
        return
    target, _, nth = spec.partition(":")
    if target != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == (int(nth) if nth else 1):
        os.kill(os.getpid(), signal.SIGKILL)
