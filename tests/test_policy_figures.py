"""docs/policy.md's figures come from `freshness simulate --corpus ...` and still reproduce."""

import json
import os
import time
from pathlib import Path

import pytest

from freshness.policy import sweep
from freshness.policy.planner import CostModel
from tests.conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"tldr": SHARED_DATA, "cpp-docs": SHARED_DATA.parent / "cpp-docs-replay"}
# held out: built with `freshness export-history` after the loop was frozen (docs/policy.md says
# how); not in ../shared, so only a machine that built them recomputes their slice
HELDOUT_ROOT = Path(os.environ.get("FRESHNESS_HELDOUT_CORPORA", ROOT.parent / "corpora"))
HELDOUT = {n: HELDOUT_ROOT / f"{n}-replay" for n in ("php-docs", "powershell-docs")}


def variants(folders: dict[str, Path]) -> tuple[list, list, list]:
    """The corpora as given, with their activity reversed (`--reverse-activity`), and with the
    loops learning the shares from 10,000 retrievals a day (`--retrievals-per-day 10000`)."""
    return ([sweep.Corpus(n, f) for n, f in folders.items()],
            [sweep.Corpus(f"{n} reversed", f, reverse=True) for n, f in folders.items()],
            [sweep.Corpus(f"{n}, shares learned", f, retrievals_per_day=LEARNED_PER_DAY)
             for n, f in folders.items()])


LEARNED_PER_DAY = 10_000.0
# marker in docs/policy.md -> (its files in docs/, its corpora)
SWEEPS = {
    "sweep": ("cadence-sweep", variants(FOLDERS)[0]),
    "hostile": ("cadence-hostile", variants(FOLDERS)[1]),
    "heldout": ("cadence-heldout", variants(HELDOUT)[0]),
    "heldout-hostile": ("cadence-heldout-hostile", variants(HELDOUT)[1]),
    "learned": ("cadence-learned", variants(FOLDERS)[2]),
    "learned-heldout": ("cadence-learned-heldout", variants(HELDOUT)[2]),
}


def committed(name: str) -> dict:
    return json.loads((ROOT / "docs" / f"{name}.json").read_text())


@pytest.mark.parametrize("marker", SWEEPS)
def test_policy_md_embeds_the_generated_table(marker):
    name, corpora = SWEEPS[marker]
    result = committed(name)
    text = (ROOT / "docs" / "policy.md").read_text()
    block = text.split(f"<!-- {marker}:begin -->\n", 1)[1].split(f"<!-- {marker}:end -->", 1)[0]
    assert block == sweep.render(result)
    assert (ROOT / "docs" / f"{name}.md").read_text() == sweep.render(result)
    cells = result["cells"]
    assert {c["corpus"] for c in cells} == {c.name for c in corpora}
    assert result.get("retrievals_per_day", []) == sorted(
        {c.retrievals_per_day for c in corpora if c.retrievals_per_day})
    assert len(cells) == len(corpora) * len(result["budgets"]) * len(result["seeds"]) * \
        len(result["exponents"])


@pytest.mark.parametrize("marker", SWEEPS)
def test_the_committed_slice_reproduces_from_the_code(marker):
    name, corpora = SWEEPS[marker]
    missing = [str(c.folder) for c in corpora if not (c.folder / "replay.parquet").exists()]
    if missing:
        pytest.skip(f"replay data not present: {', '.join(missing)}")
    result = committed(name)
    started = time.perf_counter()
    rows = sweep.check_slice(corpora, CostModel(**result["costs"]))
    assert rows == result["slice"]  # the policy code changed: rerun the sweep (docs/policy.md)
    assert time.perf_counter() - started < 120
