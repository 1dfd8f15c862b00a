"""Runs of different shards in parallel OS processes share one state root and embedded index.

Two `freshness sync --shard X` processes start together on the same state root and the same
embedded Qdrant folder (one edge shard per corpus shard, so they must not collide), first on
a new index and then on edits in both shards. After each round the index, the manifests and
the source agree (`verify --deep`), and the alias serves the collection.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from integration_helpers import REPO_ROOT, service_env

from freshness.integrity.verify import verify
from freshness.state.status import shard_status

pytestmark = pytest.mark.integration

SHARDS = ("alpha", "beta")


def _write_corpus(root: Path) -> None:
    for shard in SHARDS:
        for i in range(6):
            path = root / shard / f"doc{i}.md"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"# {shard} {i}\n\nThe {shard} team ships release {i} on day {i}.\n\n"
                            f"Notes for {shard} item {i}: keep the checklist short.")


def _sync_in_parallel(corpus: Path, tmp_path: Path, label: str) -> dict[str, dict]:
    where = ["--path", str(corpus), "--state-root", str(tmp_path / "state"),
             "--index-path", str(tmp_path / "qdrant"), "--device", "cpu"]
    procs = {}
    for shard in SHARDS:
        log = open(tmp_path / f"{label}-{shard}.err", "wb")  # noqa: SIM115
        procs[shard] = (subprocess.Popen(
            [sys.executable, "-m", "freshness.cli", "sync", "--shard", shard, "--json",
             *where],
            cwd=REPO_ROOT, env=service_env(), stdout=subprocess.PIPE, stderr=log), log)
    results = {}
    for shard, (proc, log) in procs.items():
        out, _ = proc.communicate(timeout=180)
        log.close()
        err = (tmp_path / f"{label}-{shard}.err").read_text(errors="replace")
        assert proc.returncode == 0, f"{label} sync of {shard} failed:\n{out.decode()}\n{err}"
        results[shard] = json.loads(out)
    return results


def _check(make_runtime, corpus: Path, expected_docs: dict[str, int]) -> None:
    rt = make_runtime(corpus)
    checks = verify(rt, deep=True)
    assert [c.shard for c in checks] == list(SHARDS)
    assert all(c.ok for c in checks), [c.as_dict() for c in checks]
    status = {r["shard"]: r for r in shard_status(rt.shard_state()).to_pylist()}
    assert {s: status[s]["docs"] for s in SHARDS} == expected_docs
    assert all(status[s]["pending_docs"] == 0 for s in SHARDS)
    assert rt.serving_collection() == rt.collection, "alias not flipped after parallel builds"


def test_two_processes_sync_different_shards_in_parallel(tmp_path, make_runtime):
    corpus = tmp_path / "corpus"
    _write_corpus(corpus)
    started = time.monotonic()
    first = _sync_in_parallel(corpus, tmp_path, "build")
    for shard in SHARDS:
        assert first[shard]["totals"]["chunks_embedded"] > 0
    _check(make_runtime, corpus, {"alpha": 6, "beta": 6})

    # Edits in both shards, again in parallel: modify, add, delete.
    for shard in SHARDS:
        (corpus / shard / "doc0.md").write_text(f"# {shard} 0\n\nRewritten after review.")
        (corpus / shard / "doc6.md").write_text(f"# {shard} 6\n\nA new page for {shard}.")
        (corpus / shard / "doc5.md").unlink()
    second = _sync_in_parallel(corpus, tmp_path, "edit")
    for shard in SHARDS:
        totals = second[shard]["totals"]
        assert (totals["docs_added"], totals["docs_modified"], totals["docs_deleted"]) == \
            (1, 1, 1)
    _check(make_runtime, corpus, {"alpha": 6, "beta": 6})
    assert time.monotonic() - started < 120
