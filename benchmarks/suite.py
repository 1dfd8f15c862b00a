"""Running benchmarks by name and collecting their figures (used by `run` and `gpu`)."""

from __future__ import annotations

import os
import sys
import time
import traceback
from dataclasses import replace
from datetime import datetime, timezone

from benchmarks.common import Context, machine_info

MODULES = {"incremental": "incremental_bench", "langchain": "langchain_bench",
           "overhead": "overhead_bench", "onnx": "onnx_bench", "diff": "diff_bench",
           "sensor": "sensor_bench", "recency": "recency_bench", "gpu": "gpu_bench",
           "sources": "source_bench"}


def run_suite(names: list[str], ctx: Context, command: str, gpu_device: str = "cuda") -> dict:
    """Run benchmarks by name; a failing one is recorded with its error, the rest go on."""
    import importlib

    started = time.perf_counter()
    results = {"command": command, "quick": ctx.quick, "data": str(ctx.data),
               "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "machine": machine_info(), "benchmarks": {}}
    for name in names:
        print(f"[benchmarks] {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(f"benchmarks.{MODULES[name]}")
            if name == "recency":
                out = module.suite(ctx)
            elif name == "gpu":
                out = module.run(replace(ctx, device=gpu_device))
            else:
                out = module.run(ctx)
            entry = {"figures": [f.as_dict() for f in out["figures"]],
                     "details": out.get("details", {})}
        except Exception as exc:  # noqa: BLE001 - report and go on with the others
            traceback.print_exc()
            entry = {"figures": [], "error": f"{type(exc).__name__}: {exc}"}
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        results["benchmarks"][name] = entry
        print(f"[benchmarks] {name} done in {entry['seconds']} s", file=sys.stderr, flush=True)
    results["wall_seconds"] = round(time.perf_counter() - started, 1)
    results["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return results
