"""Fault injection for the crash-consistency tests: die at a named point, as a crash would.

`FRESHNESS_FAULT=<name>` kills the process with SIGKILL the first time `fault_point(name)` is
reached; `FRESHNESS_FAULT=<name>:N` on the N-th time. Unset (production), a call costs one
environment lookup. Points: after_chunking, mid_embedding, partial_upsert, before_manifest,
mid_manifest, alias_swap, collection_meta, and the effect boundaries state_write (a state file
written, not yet renamed into place), index_write (each upsert/delete/set_payload batch),
lease_taken and retire_archive (see docs/reliability.md).

`set_hook(fn)` installs an in-process hook called with the point's name at every point: the
stateful property test uses it to crash at the N-th boundary of any kind.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

FAULT_VAR = "FRESHNESS_FAULT"
_hits: dict[str, int] = {}
_hook: list[Callable[[str], None]] = []


def set_hook(hook: Callable[[str], None] | None) -> None:
    """Install (or with None, remove) the in-process hook every fault point calls."""
    _hook[:] = [hook] if hook else []


def fault_point(name: str) -> None:
    """SIGKILL this process here when FRESHNESS_FAULT names this point (and hit count)."""
    for hook in _hook:
        hook(name)
    spec = os.environ.get(FAULT_VAR)
    if not spec:
        return
    target, _, nth = spec.partition(":")
    if target != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == (int(nth) if nth else 1):
        os.kill(os.getpid(), signal.SIGKILL)
