"""Issue 13 at the sync level (real model, embedded Qdrant): isolation (2), convergence of an
added-only crash (3), self-healing (4), removal (5) and containment end to end (1).

Every test ends on `assert_converged` where the invariant must hold: index == manifests ==
source, exactly, under the current model.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from reliability_helpers import assert_converged

from freshness.errors import FreshnessError
from freshness.pipeline.detect import detect
from freshness.pipeline.search import search
from freshness.pipeline.sync import sync
from freshness.state import layout
from freshness.state.status import shard_status

SECRET = "TOP SECRET: the launch code is 0000."


class Crash(BaseException):
    """Stands for a kill: nothing after it runs (not caught by `except Exception`)."""


def _doc_ids(rt, query: str = "fruit boats bicycles", limit: int = 50) -> set[str]:
    return {h.payload["doc_id"] for h in search(rt, query, limit).hits}


def _shard_dir(rt, shard: str) -> tuple[str, ...]:
    return layout.shard_dir(rt.collection, shard)


def _index_dir(rt, shard: str) -> Path:
    return Path(rt.settings.index_path) / "collections" / rt.collection / shard


# -- 1. containment, end to end -----------------------------------------------------------

def test_link_to_a_secret_is_not_served_and_an_indexed_one_is_removed(corpus, make_runtime,
                                                                      tmp_path):
    rt = make_runtime(corpus)
    secret = tmp_path / "secret.md"
    secret.write_text(SECRET)
    (corpus / "alpha" / "inner.md").write_text("Fruit salad needs apples and pears.")
    assert sync(rt).ok
    # the doc becomes a link to a secret outside the root: its indexed version must go too
    (corpus / "alpha" / "inner.md").unlink()
    (corpus / "alpha" / "inner.md").symlink_to(secret)
    result = sync(rt)
    assert result.ok
    skipped = {s["doc_id"]: s["reason"] for s in result.summary()["skipped"]}
    assert "outside the source root" in skipped["alpha/inner.md"]
    hits = search(rt, "launch code secret", 50).hits
    assert all(SECRET not in h.payload["text"] for h in hits)
    assert "alpha/inner.md" not in {h.payload["doc_id"] for h in hits}
    assert_converged(rt)


# -- 2. isolation --------------------------------------------------------------------------

def test_non_utf8_name_is_a_counted_skip_and_other_shards_sync(corpus, make_runtime):
    with open(os.fsencode(corpus / "alpha") + b"/caf\xe9.md", "wb") as out:
        out.write(b"a latin-1 name")
    rt = make_runtime(corpus)
    result = sync(rt)
    assert result.ok and result.totals["docs_skipped"] == 1
    assert {"alpha/apples.md", "beta/boats.md"} <= _doc_ids(rt)
    assert_converged(rt)


@pytest.mark.parametrize("name", [layout.PENDING_FILE, "pending_docs.parquet"])
def test_corrupt_pending_state_is_rebuilt(corpus, make_runtime, name):
    rt = make_runtime(corpus)
    assert sync(rt).ok
    (corpus / "alpha" / "pears.md").write_text("# Pears\n\nPears ripen after picking.")
    detect(rt)
    rt.store.write_bytes(b"\x00garbage{", *_shard_dir(rt, "alpha"), name)
    _, pending = detect(rt)  # every shard is detected; the bad file is rewritten
    assert {p.shard: p.modified for p in pending} == {"alpha": 1, "beta": 0}
    rt.store.write_bytes(b"\x00garbage{", *_shard_dir(rt, "alpha"), name)
    assert sync(rt).ok
    assert shard_status(rt.shard_state()).num_rows == 2
    assert_converged(rt)


def test_corrupt_alias_and_collection_files_are_rebuilt(corpus, make_runtime):
    rt = make_runtime(corpus)
    assert sync(rt).ok
    index_root = Path(rt.settings.index_path)
    (index_root / "aliases.json").write_text("{not json")
    (index_root / "collections" / rt.collection / "collection.json").write_text("")
    assert rt.serving_collection() is None  # unreadable alias: nothing served, no traceback
    (corpus / "beta" / "boats.md").write_text("# Boats\n\nBoats have sails and oars.")
    result = sync(rt)
    assert result.ok, result.summary()
    assert rt.serving_collection() == rt.collection
    assert "beta/boats.md" in _doc_ids(rt, "boats sails")
    assert_converged(rt)


# -- 3. convergence ------------------------------------------------------------------------

def test_crash_after_writing_added_only_docs_converges(corpus, make_runtime, monkeypatch):
    rt = make_runtime(corpus)
    assert sync(rt).ok
    for name in ("figs", "kiwis", "limes"):
        (corpus / "alpha" / f"{name}.md").write_text(f"# {name}\n\n{name} are fruit.")

    def crash(point: str) -> None:
        if point == "before_manifest":
            raise Crash(point)

    monkeypatch.setattr("freshness.pipeline.sync.fault_point", crash)
    with pytest.raises(Crash):
        sync(rt)
    monkeypatch.undo()
    rerun = sync(rt)
    assert rerun.ok and rerun.totals["chunks_embedded"] == 0  # adopted, not embedded again
    third = sync(rt)
    assert third.totals["docs_added"] == 0 and third.totals["chunks_embedded"] == 0
    assert_converged(rt)


# -- 4. self-healing -----------------------------------------------------------------------

def test_deleted_index_folder_is_noticed_by_the_next_sync(corpus, make_runtime):
    rt = make_runtime(corpus)
    assert sync(rt).ok
    shutil.rmtree(_index_dir(rt, "alpha"))
    found = search(rt, "apples", 10)
    assert "alpha" in found.skipped_shards  # named, not silently empty
    result = sync(rt)  # quiet shard, within the index-check interval: the probe notices
    assert result.ok and result.totals["chunks_embedded"] >= 2
    assert "alpha/apples.md" in _doc_ids(rt, "apples")
    assert_converged(rt)


def test_damaged_edge_shard_is_skipped_by_search_and_fixed_by_repair(corpus, make_runtime):
    rt = make_runtime(corpus)
    assert sync(rt).ok
    folder = _index_dir(rt, "alpha")
    for path in folder.rglob("*"):
        if path.is_file():
            path.write_bytes(b"\x00damaged")
    found = search(rt, "boats", 10)
    assert "alpha" in found.skipped_shards and found.problems["alpha"]
    assert any(h.payload["doc_id"].startswith("beta/") for h in found.hits)
    result = sync(rt)
    assert not result.ok
    assert "freshness repair" in {s.shard: s.error for s in result.shards}["alpha"]
    from freshness.integrity.repair import repair

    report = repair(rt)
    assert "alpha" in report["index_rebuilt"]
    assert sync(rt).ok
    assert_converged(rt)


def test_repair_fixes_both_directions(corpus, make_runtime):
    rt = make_runtime(corpus)
    assert sync(rt).ok
    rt.store.write_bytes(b"garbage", *_shard_dir(rt, "beta"), layout.MANIFEST_FILE)
    shutil.rmtree(_index_dir(rt, "alpha"))
    from freshness.integrity.repair import repair

    report = repair(rt)
    assert "beta" in [r["shard"] for r in report["manifests_rebuilt"]]
    assert "alpha" in report["index_rebuilt"]
    assert_converged(rt)


# -- 5. removal ----------------------------------------------------------------------------

def test_vanished_shard_is_retired(corpus, make_runtime):
    rt = make_runtime(corpus)
    assert sync(rt).ok
    shutil.rmtree(corpus / "beta")
    from freshness.integrity.verify import verify

    assert not {c.shard: c.ok for c in verify(rt, deep=True)}["beta"]  # was ok on main
    result = sync(rt)
    assert result.ok and result.retired_shards == ["beta"]
    assert not any(d.startswith("beta/") for d in _doc_ids(rt, "boats bicycles"))
    assert shard_status(rt.shard_state())["shard"].to_pylist() == ["alpha"]
    assert rt.store.list_dir(*layout.retired_dir(rt.collection))  # state archived
    assert sync(rt).retired_shards == []
    assert_converged(rt)


def test_vanished_shard_named_by_a_targeted_run_is_retired(corpus, make_runtime):
    rt = make_runtime(corpus)
    assert sync(rt).ok
    shutil.rmtree(corpus / "beta")
    result = sync(rt, ["beta"])
    assert result.ok and result.retired_shards == ["beta"]
    assert_converged(rt)


def test_empty_or_missing_source_root_deletes_nothing(corpus, make_runtime, tmp_path):
    rt = make_runtime(corpus)
    assert sync(rt).ok
    before = _doc_ids(rt)
    for child in list(corpus.iterdir()):
        shutil.rmtree(child)
    result = sync(rt)
    assert not result.ok and result.retired_shards == []
    assert "empty" in result.summary()["errors"][0]
    assert _doc_ids(rt) == before
    corpus.rmdir()
    with pytest.raises(FreshnessError, match="FRESHNESS_SOURCE_PATH"):
        sync(rt)
    assert _doc_ids(rt) == before


def test_dagster_retires_a_vanished_shard_and_drops_its_partition(corpus, tmp_path, embedder):
    import dagster as dg

    from assets.resources import FreshnessResource
    from assets.shard_embeddings import shard_embeddings
    from sensors.source_change_sensor import source_change_sensor

    resource = FreshnessResource(source_path=str(corpus), state_root=str(tmp_path / "state"),
                                 index_path=str(tmp_path / "qdrant"), device="cpu")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("shards", ["alpha", "beta"])
    for shard in ("alpha", "beta"):
        assert dg.materialize([shard_embeddings], partition_key=shard, instance=instance,
                              resources={"freshness": resource}).success
    shutil.rmtree(corpus / "beta")

    def tick():
        return source_change_sensor(dg.build_sensor_context(
            instance=instance, resources={"freshness": resource}))

    first = tick()
    assert [r.partition_key for r in first.run_requests] == ["beta"]
    run = dg.materialize([shard_embeddings], partition_key="beta", instance=instance,
                         resources={"freshness": resource})
    meta = run.asset_materializations_for_node("shard_embeddings")[0].metadata
    assert meta["retired"].value is True and meta["chunks_retired"].value == 2
    second = tick()
    assert not second.run_requests
    (drop,) = [r for r in second.dynamic_partitions_requests
               if isinstance(r, dg.DeleteDynamicPartitionsRequest)]
    assert drop.partition_keys == ["beta"]


def test_damaged_rate_history_or_manifest_blocks_only_its_own_shard_in_detect(corpus,
                                                                              make_runtime):
    rt = make_runtime(corpus)
    assert sync(rt).ok
    detect(rt)
    rt.store.write_bytes(b"\x00not parquet", *layout.rate_history_path("beta"))
    _, pending = detect(rt)  # a damaged rate history is rebuilt, not fatal
    assert sorted(p.shard for p in pending) == ["alpha", "beta"]
    rt.store.write_bytes(b"\x00garbage", *_shard_dir(rt, "alpha"), layout.MANIFEST_FILE)
    _, pending = detect(rt)
    assert [p.shard for p in pending] == ["beta"]  # alpha fails alone (logged, repairable)


def test_sensor_tick_goes_on_when_one_shard_manifest_is_damaged(corpus, tmp_path, embedder):
    import dagster as dg

    from assets.resources import FreshnessResource
    from sensors.source_change_sensor import source_change_sensor

    resource = FreshnessResource(source_path=str(corpus), state_root=str(tmp_path / "state"),
                                 index_path=str(tmp_path / "qdrant"), device="cpu")
    rt = resource.runtime()
    assert sync(rt).ok
    rt.store.write_bytes(b"\x00garbage", *_shard_dir(rt, "alpha"), layout.MANIFEST_FILE)
    (corpus / "beta" / "boats.md").write_text("# Boats\n\nBoats have sails.")
    result = source_change_sensor(dg.build_sensor_context(
        instance=dg.DagsterInstance.ephemeral(), resources={"freshness": resource}))
    assert "beta" in json.loads(result.cursor)["pending"]


def test_doc_vanishing_between_listing_and_reading_is_named_and_converges(corpus,
                                                                          make_runtime):
    rt = make_runtime(corpus)
    assert sync(rt).ok
    (corpus / "alpha" / "figs.md").write_text("# Figs\n\nFigs grow in warm places.")
    real_read = rt.source.read

    def read_after_delete(shard, doc_ids):
        (corpus / "alpha" / "figs.md").unlink(missing_ok=True)  # gone after the listing
        return real_read(shard, doc_ids)

    rt.source.read = read_after_delete
    result = sync(rt)
    assert result.ok
    named = {s["doc_id"]: s["reason"] for s in result.summary()["skipped"]}
    assert "vanished" in named["alpha/figs.md"]
    rt.source.read = real_read
    assert sync(rt).totals["docs_added"] == 0
    assert_converged(rt)


@pytest.mark.parametrize("point", ["retire_archive", "state_write"])
def test_crash_while_retiring_a_shard_converges(corpus, make_runtime, point):
    """Killed after the points were dropped, or in the middle of copying the state away."""
    from freshness.util import faults

    rt = make_runtime(corpus)
    assert sync(rt).ok
    shutil.rmtree(corpus / "beta")
    hits = []

    def crash(name: str) -> None:
        hits.append(name)
        if name == point and "retire_archive" in hits:  # i.e. during the retirement
            raise Crash(name)

    faults.set_hook(crash)
    try:
        with pytest.raises(Crash):
            sync(rt)
    finally:
        faults.set_hook(None)
    result = sync(rt)  # points already dropped or not: retired again, state archived
    assert result.ok and result.retired_shards == ["beta"]
    assert sync(rt).retired_shards == []
    assert_converged(rt)
