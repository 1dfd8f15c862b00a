"""End-to-end sync with the real model and embedded Qdrant: only what changed is embedded."""

import shutil

import pyarrow as pa
import pyarrow.parquet as pq

from freshness.index.base import PointRecord
from freshness.integrity.verify import verify
from freshness.pipeline.detect import detect
from freshness.pipeline.search import search
from freshness.pipeline.sync import sync
from freshness.sources import TableSource

LONG_DOC = "\n\n".join(
    f"Chapter {i}: " + " ".join(f"topic{i} fact{j}" for j in range(60)) for i in range(6))


def counts(result):
    return result.totals


def all_ok(rt):
    checks = verify(rt, deep=True)
    return all(c.ok for c in checks), [c.as_dict() for c in checks if not c.ok]


def test_initial_index_then_edit_add_delete(corpus, make_runtime):
    (corpus / "alpha" / "long.md").write_text(LONG_DOC)
    rt = make_runtime(corpus)
    first = sync(rt)
    assert first.ok and first.alias_switched
    total_chunks = counts(first)["chunks_embedded"]
    assert total_chunks == counts(first)["chunks_total"] > 6
    assert all_ok(rt)[0]

    # Edit one paragraph of the long doc: exactly one chunk is re-embedded.
    (corpus / "alpha" / "long.md").write_text(LONG_DOC.replace("topic3 fact7", "walrus3 fact7"))
    edit = sync(rt)
    assert counts(edit)["chunks_embedded"] == 1
    assert counts(edit)["chunks_retired"] == 1
    assert counts(edit)["docs_modified"] == 1

    # Add and delete: detection records how each pending doc changed (the policy reads it).
    (corpus / "beta" / "kites.md").write_text("Kites fly high when the wind blows.")
    (corpus / "alpha" / "pears.md").unlink()
    detect(rt)
    pending = {s: rt.shard_state().read_pending_docs(s).to_pylist() for s in ("alpha", "beta")}
    assert [(p["doc_id"], p["change"]) for p in pending["alpha"] + pending["beta"]] == [
        ("alpha/pears.md", "deleted"), ("beta/kites.md", "added")]
    change = sync(rt)
    c = counts(change)
    assert (c["docs_added"], c["docs_deleted"], c["chunks_embedded"]) == (1, 1, 1)
    hits = search(rt, "kites flying in the wind", limit=1).hits
    assert hits[0].payload["doc_id"] == "beta/kites.md"
    assert "Kites fly high" in hits[0].payload["text"]
    assert not any(h.payload["doc_id"] == "alpha/pears.md"
                   for h in search(rt, "sweet grainy pears", limit=10).hits)
    hits = search(rt, "Chapter 3: walrus3 fact7 topic3 fact8", limit=10).hits
    hit = next(h for h in hits if "walrus3" in h.payload["text"])
    for key in ("model", "model_revision", "content_hash", "source_updated_at", "embedded_at"):
        assert hit.payload[key]

    # Nothing changed: nothing embedded, state stays consistent.
    again = sync(rt)
    assert counts(again)["chunks_embedded"] == 0 and counts(again)["chunks_retired"] == 0
    assert all_ok(rt)[0]


def test_bad_input_after_indexing_loses_nothing(corpus, make_runtime):
    rt = make_runtime(corpus)
    sync(rt)
    (corpus / "alpha" / "apples.md").write_bytes("caf\xe9".encode("latin-1"))
    (corpus / "alpha" / "empty.md").write_text("")
    result = sync(rt)
    skipped = {s.doc_id: s.reason for r in result.shards for s in r.skips}
    assert "not UTF-8" in skipped["alpha/apples.md"] and "empty" in skipped["alpha/empty.md"]
    assert counts(result)["docs_deleted"] == 0
    hits = search(rt, "apples grow on trees", limit=1).hits
    assert hits[0].payload["doc_id"] == "alpha/apples.md"


def test_vanished_shard_folder_is_retired_as_a_whole(corpus, make_runtime):
    """A shard gone before the run is retired (issue 13, class 5); one vanishing mid-scan
    gives an incomplete listing that deletes nothing (tests/test_sources.py)."""
    rt = make_runtime(corpus)
    sync(rt)
    shutil.rmtree(corpus / "beta")
    result = sync(rt, ["alpha", "beta"])
    assert counts(result)["docs_deleted"] == 0 and result.retired_shards == ["beta"]
    assert search(rt, "boats carry cargo", limit=1).hits[0].payload["doc_id"] != "beta/boats.md"


def test_duplicate_ids_and_unsafe_shards_in_a_table_source(tmp_path, make_runtime):
    path = tmp_path / "docs.parquet"
    rows = [{"doc_id": "a", "shard": "s1", "content": "Alpha text about owls."},
            {"doc_id": "b", "shard": "s1", "content": "Beta text about foxes."}]
    pq.write_table(pa.Table.from_pylist(rows), path.with_suffix(".0.parquet"))
    rt = make_runtime(source=TableSource.from_parquet(path.with_suffix(".0.parquet")))
    sync(rt)
    rows += [{"doc_id": "b", "shard": "s1", "content": "Beta again."},
             {"doc_id": "x", "shard": "../x", "content": "escape"},
             {"doc_id": "y", "shard": "ctl\x07name", "content": "bell"}]
    pq.write_table(pa.Table.from_pylist(rows), path)
    rt2 = make_runtime(source=TableSource.from_parquet(path))
    result = sync(rt2)
    reasons = [s.reason for s in result.discovery_skips]
    assert len(reasons) == 2 and all("not allowed" in r for r in reasons)
    assert any("duplicate doc_id" in s.reason for r in result.shards for s in r.skips)
    assert counts(result)["docs_deleted"] == 0
    assert search(rt2, "foxes", limit=1).hits[0].payload["doc_id"] == "b"
    state_root = rt2.store.base
    assert not any(".." in p.name for p in (tmp_path / "state").rglob("*"))
    assert state_root.endswith("state")


def test_drift_is_repaired_and_orphans_removed(corpus, make_runtime):
    rt = make_runtime(corpus, index_check_interval_minutes=0)  # check Qdrant on every sync
    sync(rt)
    manifest = rt.shard_state().load("alpha")
    lost = manifest.chunks["point_id"][0].as_py()
    with rt.index.open_shard(rt.collection, "alpha") as session:
        session.delete([lost])
        session.upsert([PointRecord("00000000-0000-0000-0000-000000000001",
                                    rt.embedder.encode(["junk"])[0], {"doc_id": "junk"})])
    ok, problems = all_ok(rt)
    assert not ok and problems[0]["points_missing"] == 1 and problems[0]["points_orphan"] == 1
    result = sync(rt)
    assert counts(result)["chunks_embedded"] == 1 and counts(result)["orphans_deleted"] == 1
    assert counts(result)["docs_repaired"] == 1
    assert all_ok(rt)[0]


def test_rerun_after_crash_before_commit_embeds_nothing_again(corpus, make_runtime, tmp_path):
    rt = make_runtime(corpus)
    sync(rt)
    saved = tmp_path / "saved-state"
    shutil.copytree(tmp_path / "state", saved)
    (corpus / "alpha" / "pears.md").write_text("# Pears\n\nPears ripen after picking.")
    sync(rt)
    shutil.rmtree(tmp_path / "state")
    shutil.copytree(saved, tmp_path / "state")  # as if the manifest commit never happened
    result = sync(rt)
    assert counts(result)["chunks_embedded"] == 0  # the points are already there
    assert counts(result)["chunks_retired"] == 1
    assert all_ok(rt)[0]


def test_model_change_builds_a_new_collection_then_swaps_the_alias(corpus, make_runtime):
    old = make_runtime(corpus)
    sync(old)
    old_collection = old.serving_collection()
    new = make_runtime(corpus, model_revision="v2-test")
    assert new.collection != old_collection
    partial = sync(new, ["alpha"])
    assert not partial.alias_switched and new.serving_collection() == old_collection
    assert counts(partial)["chunks_embedded"] == counts(partial)["chunks_total"]
    done = sync(new, ["beta"])
    assert done.alias_switched and new.serving_collection() == new.collection
    hit = search(new, "boats", limit=1).hits[0]
    assert hit.payload["model_revision"] == "v2-test"


def test_old_collections_beyond_keep_are_dropped_after_a_swap(corpus, make_runtime, tmp_path):
    v1 = make_runtime(corpus, keep_old_collections=1)
    sync(v1)
    v1.index.ensure_collection("someone-elses", 4)  # not ours: never a candidate
    v2 = make_runtime(corpus, model_revision="v2-test", keep_old_collections=1)
    assert sync(v2).alias_switched
    assert {v1.collection, v2.collection} <= set(v2.index.collections())  # v1 kept (rollback)
    v3 = make_runtime(corpus, model_revision="v3-test", keep_old_collections=1)
    assert sync(v3).alias_switched
    remaining = set(v3.index.collections())
    assert v1.collection not in remaining and {v2.collection, v3.collection} <= remaining
    assert "someone-elses" in remaining
    assert not (tmp_path / "state" / "collections" / v1.collection).exists()
    assert (tmp_path / "state" / "collections" / v2.collection).exists()
    assert search(v3, "boats", limit=1).hits[0].payload["model_revision"] == "v3-test"
