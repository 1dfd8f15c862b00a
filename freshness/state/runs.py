"""A record per sync run (what it embedded, how long it took): the cost model learns from it."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from freshness.errors import ConfigError
from freshness.state.store import StateStore
from freshness.util.timeutil import as_utc, utc_now

KEEP_RUNS = 500


COST_UNITS = ("gpu_seconds", "tokens", "usd")


def run_cost(cost_unit: str, wall_seconds: float, embed_seconds: float, device: str | None,
             tokens: int, usd_per_million_tokens: float = 0.0) -> float:
    """A run's cost in the budget's unit. GPU seconds: the run's wall time in-process (the
    model is held for all of it), the time spent waiting on an endpoint (its GPU is warm and
    shared, so only our requests count); tokens and money: what the model read."""
    if cost_unit == "gpu_seconds":
        return embed_seconds if (device or "").startswith("endpoint:") else wall_seconds
    if cost_unit == "tokens":
        return float(tokens)
    if cost_unit == "usd":
        return tokens * usd_per_million_tokens / 1e6
    raise ConfigError(f"FRESHNESS_COST_UNIT={cost_unit!r}: use one of {', '.join(COST_UNITS)}")


def record_run(store: StateStore, shards: list[str], chunks_embedded: int, embed_seconds: float,
               model_load_seconds: float, wall_seconds: float, device: str | None,
               tokens: int = 0, cost_unit: str = "gpu_seconds",
               usd_per_million_tokens: float = 0.0, finished_at: datetime | None = None) -> None:
    """Write one run record (with its cost in `cost_unit`); keep the newest KEEP_RUNS.
    `finished_at` (default: the wall clock) is the run's own clock, e.g. a replayed one."""
    now = as_utc(finished_at) if finished_at else utc_now()
    name = f"{now.strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}.json"
    cost = run_cost(cost_unit, wall_seconds, embed_seconds, device, tokens,
                    usd_per_million_tokens)
    store.write_bytes(json.dumps({
        "finished_at": now.isoformat(), "shards": shards, "chunks_embedded": chunks_embedded,
        "embed_seconds": embed_seconds, "model_load_seconds": model_load_seconds,
        "wall_seconds": wall_seconds, "device": device, "tokens": tokens,
        "cost": cost, "cost_unit": cost_unit,
    }).encode(), "runs", name)
    names = store.list_dir("runs")
    for old in names[:-KEEP_RUNS]:
        store.delete("runs", old)


def load_runs(store: StateStore, newest: int = 200) -> list[dict]:
    """The newest run records whose cost is in the unit the newest run used (a change of
    backend or unit starts the cost learning afresh instead of mixing units)."""
    runs = []
    for name in store.list_dir("runs")[-newest:]:
        try:
            runs.append(store.read_json("runs", name))
        except Exception:  # noqa: BLE001 - a corrupt record is skipped, not fatal
            continue
    runs = [r for r in runs if r]
    unit = runs[-1].get("cost_unit", "gpu_seconds") if runs else None
    return [r for r in runs if r.get("cost_unit", "gpu_seconds") == unit]


def run_cost_of(run: dict) -> float:
    """A run record's cost in its unit (older records: wall seconds)."""
    return float(run.get("cost", run.get("wall_seconds")) or 0.0)


def spent_seconds(runs: list[dict], since: datetime) -> float:
    """Cost (GPU seconds, or the configured unit) of the runs from `load_runs` since `since`."""
    return sum(run_cost_of(r) for r in runs
               if r.get("chunks_embedded") and (as_utc(r.get("finished_at")) or since) > since)
