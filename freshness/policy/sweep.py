"""The evaluation that cannot overfit: every policy on every corpus × budget × seed × Zipf exponent.

Budgets are shares of immediate's spend on each log (so they mean the same on every corpus);
baselines are calibrated with hindsight, adaptive takes the budget as given, the oracle is the
clairvoyant limit; `uniform-paced` and `threshold-paced` are the baselines as one could deploy
them (the budget as given, no hindsight). A corpus can be evaluated with its activity reversed
(`Corpus(reverse=True)`), so a result that holds for one trend only shows. `render` writes the
table (medians over seeds) that docs/policy.md embeds; `check_slice` recomputes a cheap slice
so a test notices when the committed figures drift.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from freshness.policy.planner import CostModel
from freshness.policy.simulator import BASELINES, DEPLOYABLE, ChangeLog, calibrate, simulate
from freshness.util.timeutil import DAY_S

POLICIES = ("adaptive", "adaptive-fixed", "adaptive-hindsight", *BASELINES, *DEPLOYABLE,
            "oracle")
ADAPTIVE = ("adaptive", "adaptive-fixed")  # the loops whose distance to the oracle is reported
SLICE = {"days": 240.0, "seed": 0, "zipf": 1.0, "budgets": (5.0, 20.0)}


@dataclass(frozen=True)
class Corpus:
    name: str
    folder: Path
    reverse: bool = False  # evaluate the log with its activity reversed (a hostile variant)
    retrievals_per_day: float | None = None  # the loops learn the shares from such a stream

    def learning(self, seed: int) -> dict:
        """`simulate`'s arguments for the shares: learned from a query stream seeded like the
        popularity, or known."""
        return {} if self.retrievals_per_day is None else {
            "retrievals_per_day": self.retrievals_per_day, "query_seed": seed}

    def log(self, seed: int, zipf: float, days: float | None = None) -> ChangeLog:
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        snapshot = pq.read_table(self.folder / "snapshot.parquet",
                                 columns=["path", "shard", "committed_at"])
        replay = pq.read_table(self.folder / "replay.parquet",
                               columns=["committed_at", "path", "shard", "op"])
        if days is not None:
            first = replay["committed_at"][0].as_py()
            cut = first.timestamp() + days * DAY_S
            stamps = pc.cast(replay["committed_at"], "int64").to_numpy() / 1e6
            replay = replay.filter(stamps <= cut)
        log = ChangeLog.from_tables(snapshot, replay, zipf_s=zipf, seed=seed)
        return log.with_activity_reversed() if self.reverse else log


def cell(log: ChangeLog, percent: float, costs: CostModel, learning: dict | None = None
         ) -> dict:
    """Every policy at `percent` % of immediate's spend on this log; for the adaptive loops
    also the oracle at *their* spend (the distance at equal spend: what the loop's timing costs,
    apart from budget it leaves unspent). `learning`: see `Corpus.learning`."""
    learning = learning or {}
    immediate = simulate(log, "immediate", 0.0, costs)
    budget = immediate.gpu_seconds_per_day * percent / 100
    row: dict = {"budget_percent": percent, "budget": round(budget, 6)}
    spent: dict[str, float] = {}
    for policy in POLICIES:
        started = time.perf_counter()
        if policy == "adaptive-hindsight":  # adaptive-fixed's K, under the budget's credit
            result = simulate(log, policy, row["adaptive-fixed"]["k"], costs, budget,
                              **learning)
        else:
            result = calibrate(log, policy, budget, costs, **learning)
        row[policy] = {"stale": round(result.stale_share, 7),
                       "spend": round(result.gpu_seconds_per_day / budget, 4),
                       "runs": result.runs, "seconds": round(time.perf_counter() - started, 2)}
        if policy == "adaptive-fixed":
            row[policy]["k"] = float(f"{result.parameter:.9g}")
        if policy == "oracle":
            row[policy]["lower_bound"] = round(result.lower_bound_stale or 0.0, 7)
        if policy in ADAPTIVE:
            spent[policy] = result.gpu_seconds_per_day
    for policy in ADAPTIVE:
        equal = simulate(log, "oracle", spent[policy], costs, budget)
        row[policy]["oracle_at_spend"] = round(equal.stale_share, 7)
    return row


def _group(corpus: Corpus, zipf: float, seed: int, budgets: Sequence[float],
           costs: CostModel) -> list[dict]:
    """The cells of one corpus × exponent × seed (one change log, every budget)."""
    log = corpus.log(seed, zipf)
    return [{"corpus": corpus.name, "zipf": zipf, "seed": seed,
             **cell(log, percent, costs, corpus.learning(seed))} for percent in budgets]


def run(corpora: Sequence[Corpus], budgets: Sequence[float], seeds: Sequence[int],
        exponents: Sequence[float], costs: CostModel, progress=print, jobs: int = 1) -> dict:
    """The whole grid (`jobs` processes, one log each at a time), plus the slice the drift
    test recomputes. The result does not depend on `jobs`."""
    groups = [(corpus, zipf, seed) for corpus in corpora for zipf in exponents for seed in seeds]
    cells = []
    with ProcessPoolExecutor(max(1, jobs)) as pool:
        futures = [pool.submit(_group, *g, list(budgets), costs) for g in groups]
        for future in futures:  # in grid order
            for row in future.result():
                cells.append(row)
                progress(json.dumps(row))
    learned = sorted({c.retrievals_per_day for c in corpora if c.retrievals_per_day})
    return {"costs": costs.__dict__, **({"retrievals_per_day": learned} if learned else {}),
            "budgets": list(budgets), "seeds": list(seeds),
            "exponents": list(exponents), "cells": cells,
            "slice": check_slice(corpora, costs)}


def check_slice(corpora: Sequence[Corpus], costs: CostModel) -> list[dict]:
    """The cheap subset: each corpus's first SLICE days, one seed and exponent, two budgets."""
    rows = []
    for corpus in corpora:
        log = corpus.log(SLICE["seed"], SLICE["zipf"], SLICE["days"])
        for percent in SLICE["budgets"]:
            row = cell(log, percent, costs, corpus.learning(SLICE["seed"]))
            for policy in POLICIES:
                row[policy].pop("seconds")
            rows.append({"corpus": corpus.name, **row})
    return rows


def summary(cells: list[dict]) -> list[dict]:
    """Per corpus × exponent × budget: medians over seeds, and the worst seed."""
    groups: dict[tuple, list[dict]] = {}
    for c in cells:
        groups.setdefault((c["corpus"], c["zipf"], c["budget_percent"]), []).append(c)
    rows = []
    for (corpus, zipf, percent), group in groups.items():
        best = [min(c[p]["stale"] for p in BASELINES) for c in group]
        row = {"corpus": corpus, "zipf": zipf, "budget_percent": percent, "seeds": len(group),
               **{p: statistics.median(c[p]["stale"] for c in group) for p in POLICIES},
               "best_baseline": statistics.median(best)}
        for p in ADAPTIVE:
            ratio = [b / max(c[p]["stale"], 1e-12) for b, c in zip(best, group)]
            gap = [c[p]["stale"] / max(c["oracle"]["stale"], 1e-12) for c in group]
            at_spend = [c[p]["stale"] / max(c[p]["oracle_at_spend"], 1e-12) for c in group]
            row.update({f"{p}:gain_median": statistics.median(ratio),
                        f"{p}:gain_worst": min(ratio),
                        f"{p}:oracle_gap_median": statistics.median(gap),
                        f"{p}:oracle_gap_at_spend_median": statistics.median(at_spend),
                        f"{p}:spend_max": max(c[p]["spend"] for c in group)})
        # the deployed loop against what one could deploy instead (the budget as given)
        deployable = [min(c[p]["stale"] for p in DEPLOYABLE) / max(c["adaptive"]["stale"], 1e-12)
                      for c in group]
        row.update({"adaptive:deployable_gain_median": statistics.median(deployable),
                    "adaptive:deployable_gain_worst": min(deployable)})
        rows.append(row)
    return rows


def render(result: dict) -> str:
    """The markdown table (stale retrievals in %, medians over seeds) and a verdict line."""
    lines = [
        "| corpus | Zipf | budget | " + " | ".join(POLICIES)
        + " | best baseline ÷ adaptive | best deployable ÷ adaptive "
        "| best baseline ÷ adaptive-fixed | adaptive ÷ oracle | adaptive-fixed ÷ oracle "
        "| adaptive ÷ oracle at its spend | adaptive-fixed ÷ oracle at its spend |",
        "|---|---:|---:|" + "---:|" * (len(POLICIES) + 7)]
    rows = summary(result["cells"])
    for r in rows:
        lines.append(
            f"| {r['corpus']} | {r['zipf']:g} | {r['budget_percent']:g} % "
            + "".join(f"| {100 * r[p]:.3f} " for p in POLICIES)
            + "".join(f"| {r[f'{key}_median']:.2f}× ({r[f'{key}_worst']:.2f}×) "
                      for key in ("adaptive:gain", "adaptive:deployable_gain",
                                  "adaptive-fixed:gain"))
            + "".join(f"| {r[f'{p}:oracle_gap_median']:.2f}× " for p in ADAPTIVE)
            + "".join(f"| {r[f'{p}:oracle_gap_at_spend_median']:.2f}× " for p in ADAPTIVE) + "|")
    lines.append("")
    strong = [r for r in rows if r["budget_percent"] >= 2]
    lines.append(
        f"- **adaptive against the deployable baselines** (the budget as given, no hindsight): "
        f"fewer stale retrievals at every seed in "
        f"{sum(r['adaptive:deployable_gain_worst'] > 1 for r in rows)} of {len(rows)} groups; "
        f"≥ 1.5× fewer (median over seeds) in "
        f"{sum(r['adaptive:deployable_gain_median'] >= 1.5 for r in strong)} of {len(strong)} "
        f"groups at budgets ≥ 2 %.")
    for p in ADAPTIVE:
        wins = sum(r[f"{p}:gain_worst"] > 1 for r in rows)
        strong = [r for r in rows if r["budget_percent"] >= 2]
        gaps = [r[f"{p}:oracle_gap_median"] for r in rows]
        at_spend = [r[f"{p}:oracle_gap_at_spend_median"] for r in rows]
        lines.append(
            f"- **{p}**: fewer stale retrievals than the best hindsight-calibrated baseline at "
            f"every seed in {wins} "
            f"of {len(rows)} corpus × exponent × budget groups; ≥ 1.5× fewer (median over "
            f"seeds) in {sum(r[f'{p}:gain_median'] >= 1.5 for r in strong)} of {len(strong)} "
            f"groups at budgets ≥ 2 %; spend at most "
            f"{100 * max(r[f'{p}:spend_max'] for r in rows):.0f} % of the budget; distance to "
            f"the oracle: median {statistics.median(gaps):.2f}×, worst group {max(gaps):.2f}× "
            f"(at its own spend: median {statistics.median(at_spend):.2f}×, worst group "
            f"{max(at_spend):.2f}×).")
    return "\n".join(lines) + "\n"


def write(result: dict, out: Path) -> tuple[Path, Path]:
    """`out`.json and `out`.md."""
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out.with_suffix(".json"), out.with_suffix(".md")
    json_path.write_text(json.dumps(result, indent=1, default=_plain) + "\n")
    md_path.write_text(render(result))
    return json_path, md_path


def _plain(value):
    return value.item() if isinstance(value, np.generic) else str(value)


def embed(markdown: str, document: Path, begin: str = "<!-- sweep:begin -->",
          end: str = "<!-- sweep:end -->") -> None:
    """Replace the generated block of `document` (between the markers) with `markdown`."""
    text = document.read_text()
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    document.write_text(f"{head}{begin}\n{markdown}{end}{tail}")
