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
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs
import pytest

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


# -- pytest fixtures over these services (tests/conftest.py makes them available) ----------

@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory) -> str:
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as endpoint:
        yield endpoint


@pytest.fixture
def s3(s3_endpoint, monkeypatch) -> tuple[pafs.S3FileSystem, str]:
    """A fresh bucket; the standard AWS variables point pyarrow (and the code) at moto."""
    for key, value in {**S3_KEYS, "AWS_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(key, value)
    fs = pafs.S3FileSystem(endpoint_override=s3_endpoint, allow_bucket_creation=True,
                           access_key=S3_KEYS["AWS_ACCESS_KEY_ID"],
                           secret_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"], region="us-east-1")
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    fs.create_dir(bucket)
    fs.create_dir(f"{bucket}-state")
    return fs, bucket


@pytest.fixture(scope="module")
def pg_server() -> str:
    with postgres_url() as url:
        if url is None:
            pytest.skip("no PostgreSQL: set FRESHNESS_TEST_PG_URL or install postgresql "
                        "(initdb) so the test can start one")
        yield url


@pytest.fixture
def pg_dsn(pg_server) -> str:
    """A fresh database on the test server."""
    import psycopg2

    name = f"src_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(pg_server)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    base = pg_server.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()
