"""Crash consistency: `freshness sync` killed (SIGKILL) at every named step converges next run.

Each case is a copy of one small indexed corpus with the same edits (1 doc modified, 2 added in
`alpha`; 1 modified, 1 deleted in `beta`: 4 chunks to embed), or a fresh corpus for the
first-build cases. The faulted CLI runs of all cases start together (each pays the model
import once, in parallel); each must die by SIGKILL (rc -9). Then, per case, the state it
left is checked against what that point promises, the next run (in-process, the same `sync`
the CLI calls, with the session's model) must converge: index == manifests == source
(`verify --deep` in-process, and as a CLI process for two cases), no orphan or duplicate
point, right hashes and model on every payload, no lease left, timestamps never going back;
and a third run must find nothing to do. Small batches make every loop have >= 2 rounds:
FRESHNESS_BATCH_SIZE=2 and FRESHNESS_EMBED_BLOCK_SIZE=2 (2 embedding blocks),
FRESHNESS_UPSERT_BATCH=1 (3 upsert batches in `alpha`).
"""

from __future__ import annotations

import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

import pyarrow.compute as pc
import pytest
from reliability_helpers import (
    assert_converged,
    assert_timestamps_monotonic,
    child_env,
    finish,
    manifest_infos,
    runtime,
    start_cli,
    where,
)

from freshness.pipeline.sync import sync
from freshness.util.timeutil import as_utc

pytestmark = pytest.mark.integration

SMALL_BATCHES = dict(FRESHNESS_BATCH_SIZE="2", FRESHNESS_EMBED_BLOCK_SIZE="2",
                     FRESHNESS_UPSERT_BATCH="1", OMP_NUM_THREADS="1")  # 10 runs share 2 cores
NEW_CHUNKS = {"alpha": 3, "beta": 1}  # what the edits make the faulted run embed


# Faults after a shard's index writes and before its commit: the rerun adopts the points.


@dataclass(frozen=True)
class Case:
    name: str
    fault: str  # FRESHNESS_FAULT
    base: str  # "indexed" (edits on an indexed corpus), "fresh" (first build), "model_change"
    rerun_embeds: int | None  # chunks the converging run embeds (None: checked in the test)
    cli_verify: bool = False  # also `freshness verify --deep` as a process (2-3 s each)
    revert: bool = False  # the source goes back to what was committed before the rerun


CASES = [
    Case("after_chunking", "after_chunking", "indexed", 4),
    Case("mid_embedding", "mid_embedding", "indexed", 4),
    Case("partial_upsert", "partial_upsert", "indexed", None, cli_verify=True),
    Case("before_manifest", "before_manifest", "indexed", 1),
    Case("mid_manifest", "mid_manifest", "indexed", 1),
    # Killed after deleting a retired point; then the edit is undone: the old point must come
    # back and the new ones go, although the source now equals the committed manifest.
    Case("before_manifest_then_revert", "before_manifest", "indexed", 1, revert=True),
    Case("second_shard_before_manifest", "before_manifest:2", "indexed", 0),
    Case("collection_meta_first_build", "collection_meta", "fresh", None),
    Case("alias_swap_first_build", "alias_swap", "fresh", 0),
    Case("model_change_alias_swap", "alias_swap", "model_change", 0, cli_verify=True),
]


def edit(corpus: Path) -> None:
    (corpus / "alpha" / "apples.md").write_text(
        "# Apples\n\nApples are picked in autumn and kept in cold stores.")
    (corpus / "alpha" / "cherries.md").write_text("# Cherries\n\nCherries ripen in June.")
    (corpus / "alpha" / "plums.md").write_text("# Plums\n\nPlums dry into prunes.")
    (corpus / "beta" / "boats.md").write_text("# Boats\n\nBoats need a harbour in storms.")
    (corpus / "beta" / "bikes.txt").unlink()


def point_ids(rt) -> dict[str, set[str]]:
    return {s: rt.index.shard_point_ids(rt.collection, s) for s in ("alpha", "beta")}


@pytest.fixture(scope="module")
def crashed(tmp_path_factory, embedder):
    """Every case prepared, its faulted CLI run started in parallel and reaped."""
    root = tmp_path_factory.mktemp("crash")
    base = root / "base"
    _write_seed(base / "corpus")
    base_rt = runtime(base, embedder)
    assert sync(base_rt).ok
    before = {"infos": manifest_infos(base_rt), "points": point_ids(base_rt),
              "collection": base_rt.collection}
    procs = {}
    for case in CASES:
        folder = root / case.name
        if case.base == "fresh":
            _write_seed(folder / "corpus")
        else:
            shutil.copytree(base, folder)
            edit(folder / "corpus")
        env = child_env(FRESHNESS_FAULT=case.fault, **SMALL_BATCHES)
        if case.base == "model_change":
            env["FRESHNESS_MODEL_REVISION"] = "v2"
        procs[case.name] = start_cli(["sync", "--json", *where(folder)], env,
                                     root / f"{case.name}.log")
    codes = {name: finish(proc) for name, proc in procs.items()}
    return {"root": root, "before": before, "codes": codes}


def _write_seed(corpus: Path) -> Path:
    docs = {"alpha/apples.md": "# Apples\n\nApples grow on trees in orchards.",
            "alpha/pears.md": "# Pears\n\nPears are sweet and grainy.",
            "beta/boats.md": "# Boats\n\nBoats float on water and carry cargo.",
            "beta/bikes.txt": "Bicycles have two wheels and pedals."}
    for rel, text in docs.items():
        (corpus / rel).parent.mkdir(parents=True, exist_ok=True)
        (corpus / rel).write_text(text)
    return corpus


def check_left_state(case: Case, rt, before: dict) -> None:
    """What the state must look like right after the kill, per fault point."""
    infos, points = manifest_infos(rt), point_ids(rt)
    old = before["infos"]
    if case.base == "fresh":
        if case.fault == "alias_swap":  # both shards committed, alias not yet written
            assert sorted(infos) == ["alpha", "beta"]
            assert rt.serving_collection() is None
            assert list(Path(rt.settings.index_path).glob("aliases.json.tmp-*"))
        else:  # killed before the collection existed: nothing committed
            assert infos == {} and points == {"alpha": set(), "beta": set()}
        return
    if case.base == "model_change":
        assert sorted(infos) == ["alpha", "beta"]  # v2 fully built ...
        assert rt.serving_collection() == before["collection"]  # ... queries still on v1
        return
    version = {s: i["version"] for s, i in infos.items()}
    old_version = {s: i["version"] for s, i in old.items()}
    if case.fault in ("after_chunking", "mid_embedding"):
        assert infos == old and points == before["points"]
    elif case.fault == "partial_upsert":
        assert version == old_version
        new = points["alpha"] - before["points"]["alpha"]
        assert len(new) <= 1 and points["beta"] == before["points"]["beta"]
    elif case.fault in ("before_manifest", "mid_manifest"):
        assert version == old_version
        assert len(points["alpha"] - before["points"]["alpha"]) == NEW_CHUNKS["alpha"]
        assert rt.store.exists("collections", rt.collection, "shards", "alpha", "lease.json")
        assert "index_checked_at" not in infos["alpha"]  # the next run must read the index
        chunk_file = f"chunks-{old_version['alpha'] + 1:08d}.parquet"
        written = rt.store.exists("collections", rt.collection, "shards", "alpha", chunk_file)
        assert written == (case.fault == "mid_manifest")
    elif case.fault == "before_manifest:2":
        assert version == {"alpha": old_version["alpha"] + 1, "beta": old_version["beta"]}
        assert len(points["beta"] - before["points"]["beta"]) == NEW_CHUNKS["beta"]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_sync_killed_at_each_step_converges_on_the_next_run(case, crashed, embedder):
    folder = crashed["root"] / case.name
    log = (crashed["root"] / f"{case.name}.log").read_text(errors="replace")
    assert crashed["codes"][case.name] == -signal.SIGKILL, log[-3000:]

    settings = {"model_revision": "v2"} if case.base == "model_change" else {}
    rt = runtime(folder, embedder, **settings)
    check_left_state(case, rt, crashed["before"])
    before = {} if case.base != "indexed" else crashed["before"]["infos"]
    after_kill = manifest_infos(rt)
    if case.revert:
        shutil.rmtree(folder / "corpus")
        _write_seed(folder / "corpus")

    rerun = sync(rt)
    assert rerun.ok, rerun.summary()
    embedded = rerun.totals["chunks_embedded"]
    if case.rerun_embeds is not None:
        assert embedded == case.rerun_embeds, rerun.summary()
    elif case.fault == "partial_upsert":
        assert embedded in (3, 4)  # the first upsert batch may have reached the WAL
    else:
        assert embedded == rerun.totals["chunks_total"]
    if case.fault == "alias_swap":
        assert rerun.alias_switched
    chunks = assert_converged(rt)
    assert chunks == ({"alpha": 2, "beta": 2} if case.base == "fresh" or case.revert else
                      {"alpha": 4, "beta": 1})
    after_rerun = manifest_infos(rt)

    again = sync(rt)  # a converged shard is a fixed point
    assert again.ok
    assert (again.totals["chunks_embedded"], again.totals["chunks_retired"],
            again.totals["orphans_deleted"]) == (0, 0, 0)
    assert_timestamps_monotonic(before, after_kill, after_rerun, manifest_infos(rt))
    assert_last_embedded_covers_chunks(rt)

    if not case.cli_verify:  # the in-process verify above is the same code
        return
    env = child_env(**({"FRESHNESS_MODEL_REVISION": "v2"} if settings else {}))
    proc = start_cli(["verify", "--deep", *where(folder)], env, folder / "verify.log")
    assert finish(proc, 120) == 0, (folder / "verify.log").read_text()[-3000:]


def assert_last_embedded_covers_chunks(rt) -> None:
    """A shard's last_embedded_at is not older than any chunk its manifest holds."""
    for shard, info in manifest_infos(rt).items():
        newest = pc.max(rt.shard_state().load(shard).chunks["embedded_at"]).as_py()
        assert newest is None or as_utc(info["last_embedded_at"]) >= newest, (
            f"{shard}: last_embedded_at {info['last_embedded_at']} is older than a chunk "
            f"embedded at {newest}")


def test_last_embedded_at_covers_points_adopted_after_a_crash(tmp_path, embedder):
    case = tmp_path / "case"
    _write_seed(case / "corpus")
    rt = runtime(case, embedder)
    sync(rt)
    saved = tmp_path / "saved"
    shutil.copytree(case / "state", saved)
    edit(case / "corpus")
    sync(rt)  # index written and committed ...
    shutil.rmtree(case / "state")
    shutil.copytree(saved, case / "state")  # ... then the commit "never happened"
    assert sync(rt).totals["chunks_embedded"] == 0
    assert_last_embedded_covers_chunks(rt)
