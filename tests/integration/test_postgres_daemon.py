"""The production instance for real: PostgreSQL storage, the daemon, sensor -> queued runs.

Starts `dagster-daemon run -w workspace.yaml` on a DAGSTER_HOME holding
deploy/dagster.postgres.yaml (unchanged) and a fresh database, over a two-shard corpus. The
source-change sensor registers the shards and requests a run per shard (batching off); the
queued run coordinator launches them; then the per-shard state and the embedded Qdrant index
are checked and the daemon is stopped with its process group.
"""

from __future__ import annotations

import importlib.util
import json
import shutil

import dagster as dg
import pytest
from dagster._core.events import DagsterEventType
from integration_helpers import (
    REPO_ROOT,
    VENV_BIN,
    ProcessGroup,
    service_env,
    wait_for,
    write_tiny_corpus,
)

from freshness.cli.main import main as freshness_cli

pytestmark = [pytest.mark.postgres, pytest.mark.integration, pytest.mark.slow]

SENSOR_TAG = "dagster/sensor_name"
TIMEOUT_S = 240


def _load_prune_runs():
    spec = importlib.util.spec_from_file_location("prune_runs", REPO_ROOT / "deploy/prune_runs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _step_windows(instance: dg.DagsterInstance, run_id: str) -> tuple[float, float]:
    events = instance.all_logs(run_id, of_type={DagsterEventType.STEP_START,
                                                DagsterEventType.STEP_SUCCESS})
    starts = [e.timestamp for e in events
              if e.dagster_event.event_type == DagsterEventType.STEP_START]
    ends = [e.timestamp for e in events
            if e.dagster_event.event_type == DagsterEventType.STEP_SUCCESS]
    return min(starts), max(ends)


def test_sensor_queues_runs_that_materialize_on_postgres(tmp_path, pg_env, monkeypatch, capsys):
    if shutil.which("dagster-daemon", path=str(VENV_BIN)) is None:
        pytest.skip("dagster-daemon is not installed in this environment")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "deploy" / "dagster.postgres.yaml", home / "dagster.yaml")
    corpus = write_tiny_corpus(tmp_path / "corpus")
    # One run per shard (no batching) so that the gpu pool's serialization is visible; the
    # batched single run is exercised in tests/test_dagster.py.
    where = {"FRESHNESS_SOURCE_PATH": str(corpus), "FRESHNESS_STATE_ROOT": str(tmp_path / "state"),
             "FRESHNESS_INDEX_PATH": str(tmp_path / "qdrant"), "FRESHNESS_BATCH_SHARDS": "false"}
    for key, value in pg_env.items():
        monkeypatch.setenv(key, value)

    daemon = ProcessGroup(
        [str(VENV_BIN / "dagster-daemon"), "run", "-w", str(REPO_ROOT / "workspace.yaml")],
        service_env(DAGSTER_HOME=str(home), **pg_env, **where), tmp_path / "daemon.log")
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            sensor_runs = dg.RunsFilter(tags={SENSOR_TAG: "source_change_sensor"})

            def sensor_runs_finished():
                records = instance.get_run_records(filters=sensor_runs)
                keys = {r.dagster_run.tags.get("dagster/partition") for r in records}
                if keys >= {"alpha", "beta"} and all(r.dagster_run.is_finished for r in records):
                    return records
                return None

            records = wait_for(sensor_runs_finished, TIMEOUT_S, 2.0,
                               "the source_change_sensor's runs to finish", alive=daemon)
            runs = [r.dagster_run for r in records]
            assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}, \
                [(r.run_id, r.status) for r in runs]
            assert sorted(r.tags["dagster/partition"] for r in runs) == ["alpha", "beta"]
            assert {r.job_name for r in runs} == {"reembed_shards"}
            assert sorted(instance.get_dynamic_partitions("shards")) == ["alpha", "beta"]
            assert instance.get_materialized_partitions(dg.AssetKey("shard_embeddings")) == \
                {"alpha", "beta"}
            # pool="gpu" with default_limit 1: the two embedding steps never overlapped
            (a_start, a_end), (b_start, b_end) = sorted(
                _step_windows(instance, r.run_id) for r in runs)
            assert a_end <= b_start, "two embedding steps ran at once despite pool gpu=1"
            if all("freshness/gpu" in r.tags for r in runs):  # once the job carries the tag
                assert {r.tags["freshness/gpu"] for r in runs} == {"true"}
    finally:
        stop_seconds = daemon.stop()
    assert stop_seconds < 30, f"daemon took {stop_seconds:.0f}s to stop:\n{daemon.log_tail()}"

    # The core's view: per-shard state and the Qdrant contents.
    cli_args = ["--path", where["FRESHNESS_SOURCE_PATH"], "--state-root",
                where["FRESHNESS_STATE_ROOT"], "--index-path", where["FRESHNESS_INDEX_PATH"],
                "--device", "cpu"]
    capsys.readouterr()
    assert freshness_cli(["status", "--json", *cli_args]) == 0
    status = json.loads(capsys.readouterr().out)
    shards = {row["shard"]: row for row in status["shards"]}
    assert sorted(shards) == ["alpha", "beta"]
    for row in shards.values():
        assert row["docs"] == 2 and row["chunks"] == 2 and row["pending_docs"] == 0
        assert row["last_embedded_at"] and not row["oldest_pending_change"]
    assert freshness_cli(["verify", "--deep", *cli_args]) == 0, capsys.readouterr().out

    # Run retention against the same database.
    prune = _load_prune_runs()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        total = instance.get_runs_count()
        assert prune.prune_runs(instance, 0, dry_run=True) >= 2
        deleted = prune.prune_runs(instance, 0)
        assert deleted >= 2
        assert instance.get_runs_count() == total - deleted
        assert instance.get_runs_count(filters=dg.RunsFilter(
            tags={SENSOR_TAG: "source_change_sensor"})) == 0
