"""docs/policy.md's figures come from `freshness simulate --corpus ...` and still reproduce."""

import json
import time
from pathlib import Path

import pytest

from freshness.policy import sweep
from freshness.policy.planner import CostModel
from tests.conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"tldr": SHARED_DATA, "cpp-docs": SHARED_DATA.parent / "cpp-docs-replay"}
# the sweep (its markers in docs/policy.md, its files) and the hostile variant: the same
# corpora with their activity reversed (`freshness simulate ... --reverse-activity`)
SWEEPS = {
    "sweep": ("cadence-sweep", [sweep.Corpus(n, f) for n, f in FOLDERS.items()]),
    "hostile": ("cadence-hostile", [sweep.Corpus(f"{n} reversed", f, reverse=True)
                                    for n, f in FOLDERS.items()]),
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
    assert len(cells) == len(corpora) * len(result["budgets"]) * len(result["seeds"]) * \
        len(result["exponents"])


@pytest.mark.skipif(not all((f / "replay.parquet").exists() for f in FOLDERS.values()),
                    reason="replay data not present")
@pytest.mark.parametrize("marker", SWEEPS)
def test_the_committed_slice_reproduces_from_the_code(marker):
    name, corpora = SWEEPS[marker]
    result = committed(name)
    started = time.perf_counter()
    rows = sweep.check_slice(corpora, CostModel(**result["costs"]))
    assert rows == result["slice"]  # the policy code changed: rerun the sweep (docs/policy.md)
    assert time.perf_counter() - started < 120
