"""Reconciliation finds planted drift; the repair job fixes it."""

from assets.checks import index_matches_manifests
from assets.repair import repair_index_job
from assets.resources import FreshnessResource
from freshness.index.base import PointRecord
from freshness.integrity.reconcile import reconcile
from freshness.pipeline.sync import sync


def test_planted_drift_is_found_and_repaired(corpus, tmp_path):
    freshness = FreshnessResource(source_path=str(corpus), state_root=str(tmp_path / "state"),
                                  index_path=str(tmp_path / "qdrant"), device="cpu")
    rt = freshness.runtime()
    sync(rt)
    alpha = rt.shard_state().load("alpha").chunks["point_id"].to_pylist()
    beta = rt.shard_state().load("beta").chunks["point_id"].to_pylist()
    vector = rt.embedder.encode(["anything"])[0]
    with rt.index.open_shard(rt.collection, "alpha") as session:
        session.delete([alpha[0]])  # deleted behind our back
        session.upsert([PointRecord("00000000-0000-0000-0000-0000000000aa", vector,
                                    {"doc_id": "ghost"})])  # an orphan
    with rt.index.open_shard(rt.collection, "beta") as session:
        payload = session.retrieve([beta[0]])[beta[0]]
        session.upsert([PointRecord(beta[0], vector,
                                    {**payload, "model_revision": "old-model"})])  # wrong model

    report = reconcile(rt)
    by_shard = {c["shard"]: c for c in report["checked"]}
    assert by_shard["alpha"]["points_missing"] == 1 and by_shard["alpha"]["points_orphan"] == 1
    assert by_shard["beta"]["payload_mismatch"] == 1
    failed = index_matches_manifests(freshness)
    assert not failed.passed and failed.metadata["drifted_shards"].value == ["alpha", "beta"]

    result = repair_index_job.execute_in_process(resources={"freshness": freshness})
    assert result.success
    assert result.output_for_node("repair_index")["repaired"] is True
    assert reconcile(rt)["drifted_shards"] == []
    assert index_matches_manifests(freshness).passed


def test_pending_source_changes_are_lag_not_drift(corpus, tmp_path):
    freshness = FreshnessResource(source_path=str(corpus), state_root=str(tmp_path / "state"),
                                  index_path=str(tmp_path / "qdrant"), device="cpu")
    sync(freshness.runtime())
    (corpus / "alpha" / "pears.md").write_text("# Pears\n\nPears ripen off the tree.")
    (corpus / "beta" / "kites.md").write_text("# Kites\n\nKites fly in the wind.")
    check = index_matches_manifests(freshness)
    assert check.passed and check.metadata["drifted_shards"].value == []
    rows = {r.data["shard"]: r.data for r in check.metadata["shards"].value.records}
    assert rows["alpha"]["pending_docs_lag"] == 1
    assert rows["beta"]["level"] == "OK"


def test_repair_leaves_pending_changes_to_the_policy(corpus, tmp_path):
    freshness = FreshnessResource(source_path=str(corpus), state_root=str(tmp_path / "state"),
                                  index_path=str(tmp_path / "qdrant"), device="cpu")
    rt = freshness.runtime()
    sync(rt)
    alpha = rt.shard_state().load("alpha").chunks["point_id"].to_pylist()
    with rt.index.open_shard(rt.collection, "alpha") as session:
        session.delete([alpha[0]])  # drift in a shard that also has a pending change
    (corpus / "alpha" / "pears.md").write_text("# Pears\n\nPears ripen off the tree.")
    report = reconcile(rt, repair=True)
    assert report["deferred_to_policy"] == ["alpha"]
    assert report["repair_totals"] == {}  # nothing embedded outside the policy and its budget
    assert rt.shard_state().load("alpha").version == 1  # the pending change is not indexed
    result = sync(rt, ["alpha"])  # the policy's next run embeds it and repairs the drift
    assert result.ok and reconcile(rt)["drifted_shards"] == []
