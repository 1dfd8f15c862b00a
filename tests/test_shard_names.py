"""Shard names: nested and unusual names are accepted and map to one reversible, safe folder
name; only truly unsafe names are refused; Dagster takes them verbatim as partition keys."""

import dagster as dg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assets.partitions import shard_partitions
from freshness.alerts.incidents import asset_url
from freshness.state.layout import shard_dir, shard_from_segment, shard_segment
from freshness.util.shard_names import MAX_SEGMENT_BYTES, is_valid_shard_name, shard_name_problem

ACCEPTED = ["alpha", "reference/spl", "tenants/acme/kb", "with space", "données", "50%",
            "a%2Fb", "-lead", "x" * 200, "UPPER/lower", "a\\b"]
REFUSED = ["", ".", "..", "../x", "a/../b", "a//b", "/abs", "trail/", "tab\there", "nul\x00",
           "x" * 300, "デ" * 40]


@pytest.mark.parametrize("name", ACCEPTED)
def test_accepted_names_round_trip_through_one_segment(name):
    assert is_valid_shard_name(name), shard_name_problem(name)
    segment = shard_segment(name)
    assert "/" not in segment and segment not in (".", "..")
    assert len(segment.encode()) <= MAX_SEGMENT_BYTES
    assert shard_from_segment(segment) == name
    assert shard_dir("c", name)[-1] == segment


def test_plain_names_keep_their_folder():
    assert shard_segment("alpha") == "alpha" and shard_segment("my-shard_1.0") == "my-shard_1.0"


@pytest.mark.parametrize("name", REFUSED)
def test_unsafe_names_are_refused_with_the_rule(name):
    problem = shard_name_problem(name)
    assert problem and "rename it at the source" in problem


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(min_size=1, max_size=120))
def test_any_accepted_name_maps_to_a_distinct_safe_segment(name):
    if not is_valid_shard_name(name):
        return
    segment = shard_segment(name)
    assert "/" not in segment and "\x00" not in segment and ".." not in segment
    assert shard_from_segment(segment) == name


def test_nested_names_are_dagster_partition_keys_verbatim():
    instance = dg.DagsterInstance.ephemeral()
    keys = ["reference/spl", "tenants/acme/kb", "with space"]
    instance.add_dynamic_partitions(shard_partitions.name, keys)
    assert set(shard_partitions.get_partition_keys(dynamic_partitions_store=instance)) == \
        set(keys)
    assert asset_url("http://ui", "tenants/acme/kb").endswith("partition=tenants%2Facme%2Fkb")


def test_nested_shards_through_the_sensor_and_a_partitioned_run(tmp_path, embedder):
    from assets.resources import FreshnessResource
    from assets.shard_embeddings import shard_embeddings
    from assets.shard_freshness import shard_freshness
    from sensors.source_change_sensor import source_change_sensor

    corpus = tmp_path / "corpus"
    for rel, text in {"tenants/acme/a.md": "Acme ships anvils by rail.",
                      "tenants/globex/b.md": "Globex sells volcanoes."}.items():
        (corpus / rel).parent.mkdir(parents=True, exist_ok=True)
        (corpus / rel).write_text(text)
    resource = FreshnessResource(source_path=str(corpus), shard_depth=2, device="cpu",
                                 state_root=str(tmp_path / "state"),
                                 index_path=str(tmp_path / "qdrant"))
    instance = dg.DagsterInstance.ephemeral()
    result = source_change_sensor(dg.build_sensor_context(
        instance=instance, resources={"freshness": resource}))
    assert result.dynamic_partitions_requests[0].partition_keys == \
        ["tenants/acme", "tenants/globex"]
    instance.add_dynamic_partitions("shards", ["tenants/acme", "tenants/globex"])
    run = dg.materialize([shard_embeddings], partition_key="tenants/acme", instance=instance,
                         resources={"freshness": resource})
    assert run.success
    fresh = dg.materialize([shard_freshness], resources={"freshness": resource},
                           instance=instance)
    rows = {r.data["shard"]: r.data for r in fresh.asset_materializations_for_node(
        "shard_freshness")[0].metadata["shard_timestamps"].value.records}
    assert rows["tenants/acme"]["pending_docs"] == 0 and rows["tenants/globex"]["pending_docs"]
    assert (tmp_path / "state" / "collections").exists()
    assert any(p.name == "tenants%2Facme" for p in (tmp_path / "state").rglob("*"))
