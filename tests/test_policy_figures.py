"""docs/policy.md's figures come from `freshness simulate --corpus ...` and still reproduce."""

import json
import time
from pathlib import Path

import pytest

from freshness.policy import sweep
from freshness.policy.planner import CostModel
from tests.conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "docs" / "cadence-sweep.json"
CORPORA = [sweep.Corpus("tldr", SHARED_DATA),
           sweep.Corpus("cpp-docs", SHARED_DATA.parent / "cpp-docs-replay")]


def committed() -> dict:
    return json.loads(RESULT.read_text())


def test_policy_md_embeds_the_generated_table():
    result = committed()
    text = (ROOT / "docs" / "policy.md").read_text()
    block = text.split("<!-- sweep:begin -->\n", 1)[1].split("<!-- sweep:end -->", 1)[0]
    assert block == sweep.render(result)
    assert (ROOT / "docs" / "cadence-sweep.md").read_text() == sweep.render(result)
    cells = result["cells"]
    assert {c["corpus"] for c in cells} == {"tldr", "cpp-docs"}
    assert len(cells) == 2 * len(result["budgets"]) * len(result["seeds"]) * \
        len(result["exponents"])


@pytest.mark.skipif(not all((c.folder / "replay.parquet").exists() for c in CORPORA),
                    reason="replay data not present")
def test_the_committed_slice_reproduces_from_the_code():
    result = committed()
    started = time.perf_counter()
    rows = sweep.check_slice(CORPORA, CostModel(**result["costs"]))
    assert rows == result["slice"]  # the policy code changed: rerun the sweep (docs/policy.md)
    assert time.perf_counter() - started < 120
