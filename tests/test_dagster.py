"""The Dagster layer for real: definitions, materializations, sensor ticks, schedule."""

import json
from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest

from assets.jobs import hourly_reembed_sweep
from assets.partitions import shard_partitions
from assets.resources import FreshnessResource
from assets.shard_embeddings import shard_embeddings
from assets.shard_freshness import shard_freshness
from assets.source_changes import source_changes
from definitions import defs
from freshness.util.timeutil import utc_now
from sensors.source_change_sensor import policy_tick, source_change_sensor


@pytest.fixture
def resource(corpus, tmp_path, embedder) -> FreshnessResource:
    return FreshnessResource(source_path=str(corpus), state_root=str(tmp_path / "state"),
                             index_path=str(tmp_path / "qdrant"), device="cpu")


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    assert {"reembed_shards", "scan_sources"} <= {j.name for j in repo.get_all_jobs()}
    assert repo.get_sensor_def("source_change_sensor").default_status == \
        dg.DefaultSensorStatus.RUNNING


def test_materialize_scan_embed_and_freshness(resource):
    instance = dg.DagsterInstance.ephemeral()
    scan = dg.materialize([source_changes], resources={"freshness": resource},
                          instance=instance)
    assert scan.success
    assert sorted(instance.get_dynamic_partitions("shards")) == ["alpha", "beta"]
    meta = scan.asset_materializations_for_node("source_changes")[0].metadata
    assert meta["pending_docs"].value == 4

    embed = dg.materialize([shard_embeddings], partition_key="alpha", instance=instance,
                           resources={"freshness": resource})
    assert embed.success
    meta = embed.asset_materializations_for_node("shard_embeddings")[0].metadata
    assert meta["chunks_embedded"].value == 2 and meta["docs_added"].value == 2
    assert meta["last_embedded_at"].value > 0

    fresh = dg.materialize([shard_freshness], resources={"freshness": resource},
                           instance=instance)
    meta = fresh.asset_materializations_for_node("shard_freshness")[0].metadata
    rows = {r.data["shard"]: r.data for r in meta["shard_timestamps"].value.records}
    assert rows["alpha"]["pending_docs"] == 0 and rows["alpha"]["chunks"] == 2
    assert rows["alpha"]["oldest_pending_change"] == ""
    assert rows["beta"]["pending_docs"] == 2 and rows["beta"]["oldest_pending_change"]


def tick(instance, resource, cursor=None, later_s: float = 0.0):
    context = dg.build_sensor_context(instance=instance, resources={"freshness": resource},
                                      cursor=cursor)
    if later_s:  # the injectable clock: a tick a little later
        return policy_tick(context, resource, utc_now() + timedelta(seconds=later_s))
    return source_change_sensor(context)


def test_sensor_registers_shards_and_batches_the_first_build(resource):
    instance = dg.DagsterInstance.ephemeral()
    result = tick(instance, resource)
    assert result.dynamic_partitions_requests[0].partition_keys == ["alpha", "beta"]
    (request,) = result.run_requests  # one run for both shards: the model loads once
    assert request.tags["dagster/asset_partition_range_start"] == "alpha"
    assert request.tags["dagster/asset_partition_range_end"] == "beta"
    assert json.loads(result.cursor)["pending"] == ["alpha", "beta"]


def test_sensor_requests_runs_only_when_the_policy_says_so(resource, corpus):
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("shards", ["alpha", "beta"])
    first = tick(instance, resource)
    for shard in ("alpha", "beta"):
        dg.materialize([shard_embeddings], partition_key=shard, instance=instance,
                       resources={"freshness": resource})
    quiet = tick(instance, resource, first.cursor)
    assert quiet.run_requests == [] and quiet.dynamic_partitions_requests == []
    assert json.loads(quiet.cursor)["pending"] == []

    (corpus / "beta" / "boats.md").write_text("# Boats\n\nCanoes are paddled.")
    thrifty = FreshnessResource(**{**resource.model_dump(), "budget_gpu_seconds_per_day": 1e-6})
    held = tick(instance, thrifty, quiet.cursor)
    assert held.run_requests == []  # debt far below what one run is worth at this budget
    assert json.loads(held.cursor)["pending"] == ["beta"]

    due = tick(instance, resource, held.cursor, 1800)  # ample budget, accrued for a run
    assert [r.partition_key for r in due.run_requests] == ["beta"]
    again = tick(instance, resource, held.cursor, 1800)
    assert again.run_requests[0].run_key == due.run_requests[0].run_key  # deduplicated

    sla = FreshnessResource(**{**thrifty.model_dump(), "max_staleness_hours": 1e-9})
    assert [r.partition_key for r in tick(instance, sla, held.cursor).run_requests] == ["beta"]


def test_the_sweep_is_off_by_default_and_asks_the_same_control_loop(resource):
    assert hourly_reembed_sweep.default_status == dg.DefaultScheduleStatus.STOPPED
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(shard_partitions.name, ["alpha", "beta"])
        with dg.build_schedule_context(
                instance=instance, resources={"freshness": resource},
                scheduled_execution_time=datetime.now(timezone.utc)) as context:
            requests = hourly_reembed_sweep(context)
    (request,) = requests  # never indexed: due; one batched run, not one per shard
    assert request.tags["freshness/trigger"] == "schedule"
    assert request.tags["dagster/asset_partition_range_start"] == "alpha"
    assert request.tags["dagster/asset_partition_range_end"] == "beta"


def test_a_batched_run_gives_each_partition_its_own_counts_and_seconds(resource, corpus):
    from assets.jobs import reembed_job
    from freshness.state.runs import load_runs

    (corpus / "alpha" / "plums.md").write_text("# Plums\n\nPlums are stone fruit.")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("shards", ["alpha", "beta"])
        job = dg.Definitions(assets=[source_changes, shard_embeddings], jobs=[reembed_job],
                             resources={"freshness": resource}).resolve_job_def("reembed_shards")
        result = job.execute_in_process(instance=instance, tags={
            "dagster/asset_partition_range_start": "alpha",
            "dagster/asset_partition_range_end": "beta"})
        assert result.success
        events = instance.fetch_materializations(dg.AssetKey("shard_embeddings"), limit=10)
    meta = {e.asset_materialization.partition: e.asset_materialization.metadata
            for e in events.records}
    assert set(meta) == {"alpha", "beta"}
    alpha, beta = meta["alpha"], meta["beta"]
    assert (alpha["docs_added"].value, alpha["chunks_embedded"].value) == (3, 3)
    assert (beta["docs_added"].value, beta["chunks_embedded"].value) == (2, 2)
    (run,) = load_runs(resource.runtime().store)  # one sync, one model load, both shards
    assert run["shards"] == ["alpha", "beta"] and run["chunks_embedded"] == 5
    seconds = {s: m["embed_seconds"].value for s, m in meta.items()}
    assert seconds["alpha"] + seconds["beta"] == pytest.approx(run["embed_seconds"], abs=0.002)
    assert seconds["alpha"] == pytest.approx(run["embed_seconds"] * 3 / 5, abs=0.001)
    assert alpha["chunks_per_second"].value == pytest.approx(3 / seconds["alpha"], rel=0.05)
    assert alpha["device"].value == "cpu" and alpha["run_shards"].value == 2
    assert "all-MiniLM-L6-v2" in alpha["model"].value
