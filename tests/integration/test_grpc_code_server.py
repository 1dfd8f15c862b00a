"""The Docker code location for real, without Docker: the image's CMD and the gRPC workspace.

Runs the `dagster code-server start ...` command from docker/Dockerfile's CMD (host and port
swapped for 127.0.0.1 and a free port), then validates docker/workspace.yaml against it (its
host swapped the same way) with `dagster definitions validate`, as the webserver and daemon
containers would load it.
"""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml
from integration_helpers import (
    REPO_ROOT,
    VENV_BIN,
    ProcessGroup,
    free_port,
    service_env,
    wait_for,
)

pytestmark = pytest.mark.integration


def _image_cmd() -> list[str]:
    text = (REPO_ROOT / "docker" / "Dockerfile").read_text().replace("\\\n", " ")
    line = next(ln for ln in text.splitlines() if ln.startswith("CMD "))
    return json.loads(line[4:])


def _healthy(port: int) -> bool:
    result = subprocess.run([str(VENV_BIN / "dagster"), "api", "grpc-health-check", "-p",
                             str(port), "--host", "127.0.0.1"], capture_output=True, timeout=30)
    return result.returncode == 0


def test_image_cmd_serves_the_docker_workspace(tmp_path):
    port = free_port()
    cmd = _image_cmd()
    cmd[cmd.index("-h") + 1] = "127.0.0.1"
    cmd[cmd.index("-p") + 1] = str(port)
    cmd[0] = str(VENV_BIN / cmd[0])
    workspace = yaml.safe_load((REPO_ROOT / "docker" / "workspace.yaml").read_text())
    server = workspace["load_from"][0]["grpc_server"]
    assert server["port"] == int(_image_cmd()[_image_cmd().index("-p") + 1])
    server.update(host="127.0.0.1", port=port)
    (tmp_path / "workspace.yaml").write_text(yaml.safe_dump(workspace))
    home = tmp_path / "dagster_home"
    home.mkdir()

    env = service_env(DAGSTER_HOME=str(home))
    code_server = ProcessGroup(cmd, env, tmp_path / "code_server.log")
    try:
        wait_for(lambda: _healthy(port), 90, 1.0, "the code server", alive=code_server)
        result = subprocess.run(
            [str(VENV_BIN / "dagster"), "definitions", "validate", "-w",
             str(tmp_path / "workspace.yaml")],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    finally:
        code_server.stop()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert f"Validation successful for code location {server['location_name']}" in output
