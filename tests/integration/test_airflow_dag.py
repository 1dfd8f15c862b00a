"""docs/airflow_example_dag.py: compiles, its helpers read the real CLI output, no shell
injection through shard names, and (with Airflow installed) `airflow dags test` runs it.

The Airflow run needs FRESHNESS_AIRFLOW_BIN: the `airflow` command of a separate environment
(`python3 -m venv /tmp/airflowvenv && /tmp/airflowvenv/bin/pip install apache-airflow==3.3.2`;
.ci/run does this), since Airflow does not belong in the project's environment.
"""

from __future__ import annotations

import importlib.util
import json
import os
import py_compile
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from integration_helpers import REPO_ROOT, VENV_BIN, service_env, write_tiny_corpus

from freshness.cli.main import main as freshness_cli

DAG_FILE = REPO_ROOT / "docs" / "airflow_example_dag.py"
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dag_module():
    py_compile.compile(str(DAG_FILE), doraise=True)
    spec = importlib.util.spec_from_file_location("airflow_example_dag", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cli_json(capsys, *args: str) -> dict:
    capsys.readouterr()
    assert freshness_cli([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_helpers_read_real_cli_output(dag_module, tmp_path, capsys, make_runtime):
    corpus = write_tiny_corpus(tmp_path / "corpus")
    where = ["--path", str(corpus), "--state-root", str(tmp_path / "state"),
             "--index-path", str(tmp_path / "qdrant"), "--device", "cpu"]
    detected = _cli_json(capsys, "detect", *where)
    assert dag_module.pending_shards(detected) == ["alpha", "beta"]
    envs = dag_module.sync_envs(["alpha"], "/opt/freshness/bin/freshness")
    assert envs == [{"FRESHNESS_BIN": "/opt/freshness/bin/freshness", "FRESHNESS_SHARD": "alpha"}]

    status = _cli_json(capsys, "status", *where)
    assert dag_module.stale_shards(status, 3600) == {}  # pending, but only for seconds
    later = datetime.now(timezone.utc) + timedelta(hours=2)
    assert set(dag_module.stale_shards(status, 3600, now=later)) == {"alpha", "beta"}

    from freshness.pipeline.sync import sync

    sync(make_runtime(corpus), ["alpha"])
    status = _cli_json(capsys, "status", *where)
    aged = {"shards": [dict(r, pending_age_seconds=9000) if r["shard"] == "beta" else r
                       for r in status["shards"]]}
    stale = dag_module.stale_shards(aged, 3600)
    assert list(stale) == ["beta"] and "2 docs pending" in stale["beta"]


def test_unsafe_shard_names_are_refused(dag_module):
    with pytest.raises(ValueError, match="refusing shard name"):
        dag_module.pending_shards({"shards": [{"shard": "a;rm -rf /", "pending_docs": 1}]})
    assert dag_module.pending_shards({"shards": [{"shard": "quiet", "pending_docs": 0}]}) == []


def test_sync_command_passes_the_shard_as_one_argument(dag_module, tmp_path):
    assert "{" not in dag_module.SYNC_COMMAND  # nothing formatted or templated into it
    fake = tmp_path / "fake-freshness"
    fake.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    fake.chmod(0o755)
    hostile = 'x"; touch pwned; echo "$(touch pwned2)'
    result = subprocess.run(["bash", "-c", dag_module.SYNC_COMMAND], cwd=tmp_path,
                            env={"PATH": os.environ["PATH"], "FRESHNESS_BIN": str(fake),
                                 "FRESHNESS_SHARD": hostile},
                            capture_output=True, text=True, timeout=30, check=True)
    assert json.loads(result.stdout) == ["sync", "--shard", hostile]
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()


AIRFLOW = os.environ.get("FRESHNESS_AIRFLOW_BIN")


@pytest.mark.airflow
@pytest.mark.slow
@pytest.mark.skipif(not AIRFLOW, reason="FRESHNESS_AIRFLOW_BIN (an `airflow` command from a "
                    "separate venv) is not set: the DAG was only compiled and unit-tested")
def test_airflow_dags_test_runs_the_dag(tmp_path, capsys):
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(DAG_FILE, dags / DAG_FILE.name)
    corpus = write_tiny_corpus(tmp_path / "corpus")
    env = service_env(
        AIRFLOW_HOME=str(tmp_path / "airflow_home"), AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__LOAD_EXAMPLES="False", FRESHNESS_BIN=str(VENV_BIN / "freshness"),
        FRESHNESS_SOURCE_PATH=str(corpus), FRESHNESS_STATE_ROOT=str(tmp_path / "state"),
        FRESHNESS_INDEX_PATH=str(tmp_path / "qdrant"))
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.pathsep.join([str(Path(AIRFLOW).parent), env["PATH"]])
    for cmd in ([AIRFLOW, "db", "migrate"], [AIRFLOW, "dags", "test", "retrieval_freshness"]):
        result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=240)
        assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    finished = [line for line in (result.stdout + result.stderr).splitlines()
                if "DagRun Finished" in line]
    assert finished and "state=success" in finished[-1], finished

    status = _cli_json(capsys, "status", "--path", str(corpus), "--state-root",
                       str(tmp_path / "state"), "--index-path", str(tmp_path / "qdrant"))
    rows = {r["shard"]: r for r in status["shards"]}
    assert sorted(rows) == ["alpha", "beta"]
    assert all(r["chunks"] > 0 and r["pending_docs"] == 0 for r in rows.values())
