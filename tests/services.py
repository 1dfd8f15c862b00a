"""Real servers on 127.0.0.1 for source tests: an S3 endpoint (moto) and PostgreSQL.

Each starts for real (no in-process mocks) and is stopped by the fixture that started it.
PostgreSQL: FRESHNESS_TEST_PG_URL when set (.ci/run exports it), else a throwaway cluster from
deploy/ci/start_postgres.sh when `initdb` is installed.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
S3_KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout_s:.0f}s")


@contextlib.contextmanager
def moto_server(log_path: Path) -> Iterator[str]:
    """`python -m moto.server` on a free port; yields its endpoint URL."""
    port = free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                                 str(port)], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            _wait_for_port(port, proc, 60, "moto server")
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def initdb_available() -> bool:
    return any(Path("/usr/lib/postgresql").glob("*/bin/initdb")) or \
        subprocess.run(["sh", "-c", "command -v initdb"], capture_output=True).returncode == 0


@contextlib.contextmanager
def postgres_url() -> Iterator[str | None]:
    """A libpq URL of a PostgreSQL server that may create databases, or None when there is
    none and none can be started here."""
    url = os.environ.get("FRESHNESS_TEST_PG_URL")
    if url:
        yield url.replace("postgresql+psycopg2://", "postgresql://")
        return
    if not initdb_available():
        yield None
        return
    out = subprocess.run([str(REPO_ROOT / "deploy/ci/start_postgres.sh")], capture_output=True,
                         text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"deploy/ci/start_postgres.sh failed: {out.stderr[-2000:]}")
    env = {}
    for line in out.stdout.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    try:
        yield env["FRESHNESS_TEST_PG_URL"].replace("postgresql+psycopg2://", "postgresql://")
    finally:
        stop = REPO_ROOT / "deploy/ci/stop_postgres.sh"
        subprocess.run([str(stop), env["FRESHNESS_TEST_PG_DIR"]], env={**os.environ, **env},
                       capture_output=True, timeout=120)
