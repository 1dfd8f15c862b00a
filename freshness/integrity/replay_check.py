"""Step a replay source commit by commit through `sync`, checking each step independently.

The check recomputes, from the change log alone, how many chunks each commit changed (chunks of
the touched docs after the commit that did not exist before it) and compares it with what the
sync embedded; at the end the index is verified deep against the source.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa

from freshness.integrity.verify import verify
from freshness.pipeline.sync import SyncResult, sync
from freshness.runtime import Runtime
from freshness.sources.replay import ReplaySource


@dataclass
class ReplayReport:
    first_seq: int
    last_seq: int
    steps: int = 0
    chunks_embedded: int = 0
    chunks_changed: int = 0  # computed independently from the change log
    docs_deleted: int = 0
    mismatched_steps: list[int] = field(default_factory=list)
    failed_steps: list[int] = field(default_factory=list)
    seconds: float = 0.0
    verify: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (not self.mismatched_steps and not self.failed_steps
                and self.verify.get("ok", False))


def _point_ids(rt: Runtime, contents: pa.Table) -> set[str]:
    return set(rt.chunker.chunk_docs(contents)["point_id"].to_pylist())


def changed_chunks(rt: Runtime, source: ReplaySource, before: int, after: int) -> int:
    """Chunks of docs touched in (before, after] that are new after the commits."""
    touched = source.touched_paths(before, after)
    old = _point_ids(rt, source.contents_as_of(before, touched))
    new = _point_ids(rt, source.contents_as_of(after, touched))
    return len(new - old)


def replay(rt: Runtime, source: ReplaySource, first: int, last: int, step: int = 1,
           on_step: Callable[[int, SyncResult, int], None] | None = None) -> ReplayReport:
    """Sync at commit `first`, then every `step` commits up to `last`."""
    started, report = time.perf_counter(), ReplayReport(first, last)
    previous: int | None = None
    for seq in list(range(first, last + 1, step)) + ([last] if (last - first) % step else []):
        source.seek(seq)
        expected = changed_chunks(rt, source, previous, seq) if previous is not None else None
        result = sync(rt)
        totals = result.totals
        report.steps += 1
        report.chunks_embedded += totals.get("chunks_embedded", 0)
        report.docs_deleted += totals.get("docs_deleted", 0)
        if not result.ok:
            report.failed_steps.append(seq)
        if expected is not None:
            report.chunks_changed += expected
            if expected != totals.get("chunks_embedded", 0):
                report.mismatched_steps.append(seq)
        else:
            report.chunks_changed += totals.get("chunks_embedded", 0)
        if on_step:
            on_step(seq, result, expected if expected is not None else -1)
        previous = seq
    checks = verify(rt, deep=True)
    report.verify = {
        "ok": all(c.ok for c in checks),
        "shards": len(checks),
        "docs_source": sum(c.docs_source for c in checks),
        "docs_indexed": sum(c.docs_indexed for c in checks),
        "points_indexed": sum(c.points_indexed for c in checks),
        "points_orphan": sum(c.points_orphan for c in checks),
        "points_missing": sum(c.points_missing for c in checks),
        "chunks_not_current": sum(c.chunks_not_current for c in checks),
        "payload_mismatch": sum(c.payload_mismatch for c in checks),
    }
    report.seconds = time.perf_counter() - started
    return report
