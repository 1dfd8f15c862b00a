"""Helpers for tests that start real processes and services (daemon, webserver, Postgres)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from tests.corpus_data import write_tiny_corpus  # noqa: F401 - re-exported for the tests

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_env(**extra: str) -> dict[str, str]:
    """The current environment for a child process: offline model, CPU, venv first on PATH."""
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", FRESHNESS_DEVICE="cpu",
               PYTHONUNBUFFERED="1")
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


class ProcessGroup:
    """A child started in its own session, stopped with its whole process group.

    `dagster dev`, the daemon and the webserver spawn code servers and run workers; a new
    session gives them one process group, so a signal reaches all of them (what `set -m`
    gives a shell script).
    """

    def __init__(self, cmd: Sequence[str], env: Mapping[str, str], log_path: Path,
                 cwd: Path = REPO_ROOT) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(list(cmd), cwd=cwd, env=dict(env), stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout_s: float = 30.0) -> float:
        """SIGINT to the group (Ctrl-C), then SIGKILL after timeout_s; returns seconds taken."""
        start = time.monotonic()
        try:
            if self.alive():
                os.killpg(self.proc.pid, signal.SIGINT)
                try:
                    self.proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(10)
            # children that outlived the leader (code servers, run workers)
            deadline = time.monotonic() + 10
            while _group_alive(self.proc.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _group_alive(self.proc.pid):
                os.killpg(self.proc.pid, signal.SIGKILL)
        finally:
            self._log.close()
        return time.monotonic() - start


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_for(predicate, timeout_s: float, interval_s: float = 1.0, what: str = "condition",
             alive: ProcessGroup | None = None):
    """Poll until predicate() is truthy; fail with the service log if it dies or times out."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if alive is not None and not alive.alive():
            pytest.fail(f"process exited ({alive.proc.returncode}) while waiting for {what}:\n"
                        f"{alive.log_tail()}")
        if time.monotonic() > deadline:
            tail = alive.log_tail() if alive is not None else ""
            pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}\n{tail}")
        time.sleep(interval_s)
