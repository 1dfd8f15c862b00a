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
