"""The Dagster UI in a real (headless) browser after a materialization.

Materializes `source_changes` and one shard of `shard_embeddings` on a SQLite DAGSTER_HOME,
starts `dagster-webserver -w workspace.yaml` on a free port in its own session, and renders the
asset group page and partition `alpha` of `shard_embeddings` with headless Chromium
(`--dump-dom`), plus a screenshot of each (left in the test's tmp_path).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from pathlib import Path

import dagster as dg
import pytest
from integration_helpers import (
    REPO_ROOT,
    VENV_BIN,
    ProcessGroup,
    free_port,
    service_env,
    wait_for,
    write_tiny_corpus,
)

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LOCATION, GROUP = "retrieval_freshness", "freshness"
ASSETS = ("source_changes", "shard_embeddings", "shard_freshness")
LOCATION_QUERY = ("{ workspaceOrError { __typename ... on Workspace { locationEntries "
                  "{ name loadStatus } } } }")


def _chromium(url: str, profile: Path, *mode: str) -> subprocess.CompletedProcess:
    """Headless Chromium with the flags that work on these machines (ENVIRONMENT.md)."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
           "--window-size=1400,900", "--virtual-time-budget=15000", *mode, url]
    return subprocess.run(cmd, capture_output=True, timeout=120, check=False)


def _location_loaded(base: str) -> bool:
    request = urllib.request.Request(f"{base}/graphql", method="POST",
                                     data=json.dumps({"query": LOCATION_QUERY}).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            body = json.load(response)
    except OSError:
        return False
    entries = body.get("data", {}).get("workspaceOrError", {}).get("locationEntries", [])
    return any(e["name"] == LOCATION and e["loadStatus"] == "LOADED" for e in entries)


def _materialize(home: Path, where: dict[str, str]) -> None:
    from assets.resources import FreshnessResource
    from assets.shard_embeddings import shard_embeddings
    from assets.source_changes import source_changes

    resource = FreshnessResource(source_path=where["FRESHNESS_SOURCE_PATH"],
                                 state_root=where["FRESHNESS_STATE_ROOT"],
                                 index_path=where["FRESHNESS_INDEX_PATH"], device="cpu")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert dg.materialize([source_changes], instance=instance,
                              resources={"freshness": resource}).success
        assert dg.materialize([shard_embeddings], partition_key="alpha", instance=instance,
                              resources={"freshness": resource}).success


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not on PATH (apt-get install chromium)")
def test_asset_group_and_partitions_render_in_chromium(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "instance" / "dagster.yaml", home / "dagster.yaml")
    corpus = write_tiny_corpus(tmp_path / "corpus")
    where = {"FRESHNESS_SOURCE_PATH": str(corpus), "FRESHNESS_STATE_ROOT": str(tmp_path / "state"),
             "FRESHNESS_INDEX_PATH": str(tmp_path / "qdrant")}
    _materialize(home, where)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = ProcessGroup(
        [str(VENV_BIN / "dagster-webserver"), "-w", str(REPO_ROOT / "workspace.yaml"),
         "-h", "127.0.0.1", "-p", str(port)],
        service_env(DAGSTER_HOME=str(home), **where), tmp_path / "webserver.log")
    try:
        wait_for(lambda: _location_loaded(base), 120, 1.0, "the webserver and code location",
                 alive=server)
        pages = {
            "group": f"{base}/locations/{LOCATION}/asset-groups/{GROUP}",
            "partitions": f"{base}/assets/shard_embeddings?view=partitions&partition=alpha",
        }
        dom = {}
        for name, url in pages.items():
            result = _chromium(url, tmp_path / f"profile-{name}", "--dump-dom")
            dom[name] = result.stdout.decode(errors="replace")
            assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
            shot = tmp_path / f"{name}.png"
            _chromium(url, tmp_path / f"profile-{name}-shot", f"--screenshot={shot}")
            assert shot.exists() and shot.stat().st_size > 10_000, f"no screenshot of {url}"
    finally:
        server.stop()

    for asset in ASSETS:
        assert asset in dom["group"], f"{asset} missing from the asset group page"
    assert "shard_embeddings" in dom["partitions"]
    for shard in ("alpha", "beta"):
        assert shard in dom["partitions"], f"partition {shard} missing from the partitions page"
    for key in ("chunks_embedded", "last_embedded_at"):  # metadata of the selected partition
        assert key in dom["partitions"], f"{key} missing from partition alpha's page"
    assert "Join the Dagster community" not in dom["group"]  # nux disabled in dagster.yaml
