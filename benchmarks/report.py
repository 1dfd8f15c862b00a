"""Write the suite's results: a Markdown table (`latest.md`) and the full JSON (`latest.json`)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.common import Figure


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if value == 0 or 0.001 <= abs(value) < 1e6:
            return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
        return f"{value:.3g}"
    return str(value)


def _met(value: bool | None) -> str:
    return {True: "yes", False: "**no**", None: ""}[value]


def markdown(results: dict) -> str:
    """The summary table plus the machine, the command and per-benchmark errors/skips."""
    machine = results["machine"]
    lines = [
        "# Benchmark results", "",
        f"Command: `{results['command']}`  ",
        f"Started {results['started_at']}, took {results['wall_seconds']:.0f} s.  ",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, "
        f"load average at start {machine['load_average_start']}, Python {machine['python']}, "
        f"commit {machine['commit']}.  ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v) + ".",
        "",
        "Each value is the median of n runs; *baseline* is measured in the same process, "
        "interleaved run by run where possible. *ratio* compares value to baseline: for "
        "interleaved throughputs it is the median of the run-by-run ratios, otherwise "
        "value / baseline.", "",
        "| benchmark | metric | value | unit | n | baseline | ratio | target | met | note |",
        "|---|---|---:|---|---:|---:|---:|---|---|---|",
    ]
    for name, bench in results["benchmarks"].items():
        for fig in bench.get("figures", []):
            f = Figure(**fig)
            lines.append(
                f"| {f.bench} | {f.metric} | {_fmt(f.value)} | {f.unit} | {f.n} | "
                f"{_fmt(f.baseline)} | {_fmt(f.ratio)} | {f.target or ''} | {_met(f.met)} | "
                f"{f.note} |")
        if bench.get("error"):
            lines.append(f"| {name} | ERROR | | | | | | | | {bench['error'][:300]} |")
        skipped = bench.get("details", {}).get("skipped")
        if skipped:
            lines.append(f"| {name} | skipped | | | | | | | | {skipped} |")
    lines += ["", "Seconds per benchmark: " + ", ".join(
        f"{k} {v.get('seconds', 0):.0f}" for k, v in results["benchmarks"].items()), ""]
    return "\n".join(lines)


def write(results: dict, out: Path, stem: str = "latest") -> tuple[Path, Path]:
    """Write `<stem>.md` and `<stem>.json` under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / f"{stem}.md", out / f"{stem}.json"
    md.write_text(markdown(results))
    js.write_text(json.dumps(results, indent=2, default=str))
    return md, js
