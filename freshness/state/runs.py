"""A record per sync run (what it embedded, how long it took): the cost model learns from it."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from freshness.state.store import StateStore
from freshness.util.timeutil import as_utc, utc_now

KEEP_RUNS = 500


def record_run(store: StateStore, shards: list[str], chunks_embedded: int, embed_seconds: float,
               model_load_seconds: float, wall_seconds: float, device: str | None) -> None:
    """Write one run record; keep the newest KEEP_RUNS."""
    now = utc_now()
    name = f"{now.strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}.json"
    store.write_bytes(json.dumps({
        "finished_at": now.isoformat(), "shards": shards, "chunks_embedded": chunks_embedded,
        "embed_seconds": embed_seconds, "model_load_seconds": model_load_seconds,
        "wall_seconds": wall_seconds, "device": device,
    }).encode(), "runs", name)
    names = store.list_dir("runs")
    for old in names[:-KEEP_RUNS]:
        store.delete("runs", old)


def load_runs(store: StateStore, newest: int = 200) -> list[dict]:
    runs = []
    for name in store.list_dir("runs")[-newest:]:
        try:
            runs.append(store.read_json("runs", name))
        except Exception:  # noqa: BLE001 - a corrupt record is skipped, not fatal
            continue
    return [r for r in runs if r]


def spent_seconds(runs: list[dict], since: datetime) -> float:
    """GPU (wall) seconds of the runs (from `load_runs`) that finished after `since`."""
    return sum(float(r.get("wall_seconds") or 0.0) for r in runs
               if r.get("chunks_embedded") and (as_utc(r.get("finished_at")) or since) > since)
