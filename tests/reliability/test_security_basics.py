"""Security basics: secrets never shown, state files not writable by others, no shell."""

from __future__ import annotations

import ast
import logging
import os
import stat
import traceback
from contextlib import contextmanager
from pathlib import Path

import pytest
from qdrant_stub import QdrantStub
from reliability_helpers import REPO_ROOT, child_env, finish, start_cli, where

from freshness.alerts.incidents import Notification
from freshness.alerts.sinks import DeliveryError, WebhookSink, deliver
from freshness.config import Settings
from freshness.index.client import QdrantUnavailableError
from freshness.pipeline.sync import sync
from freshness.state.lease import ShardLease

API_KEY = "sk-test-DO-NOT-PRINT-7f3a9c"
pytestmark = pytest.mark.filterwarnings("ignore:Failed to obtain server version",
                                        "ignore:Api key is used with an insecure connection")


def test_settings_never_show_the_api_key():
    for settings in (Settings(qdrant_api_key=API_KEY),
                     Settings.from_env({"QDRANT_API_KEY": API_KEY}),
                     Settings.from_env({"FRESHNESS_QDRANT_API_KEY": API_KEY})):
        assert settings.qdrant_api_key == API_KEY
        assert API_KEY not in repr(settings) and API_KEY not in str(settings)
        assert "qdrant_api_key='***'" in repr(settings)


def test_dagster_resources_take_secrets_as_env_vars(monkeypatch):
    import dagster as dg

    from assets.resources import FreshnessResource

    monkeypatch.setenv("QDRANT_API_KEY", API_KEY)
    resource = FreshnessResource.from_env()
    assert isinstance(resource.qdrant_api_key, dg.EnvVar)
    assert API_KEY not in repr(resource)
    sink = WebhookSink(f"https://hooks.example/{API_KEY}")
    assert API_KEY not in repr(sink)


def test_a_failing_webhook_never_names_its_url(caplog):

    caplog.set_level(logging.DEBUG)
    with QdrantStub() as stub:  # any URL that answers 500
        sink = WebhookSink(f"{stub.url}/hook/{API_KEY}", retries=1, backoff_s=0.01)
        failed = deliver([sink], [Notification("open", "alpha", "warn", "stale")])
    assert failed and API_KEY not in caplog.text
    with pytest.raises(DeliveryError) as raised:
        sink.send(Notification("open", "alpha", "warn", "stale"))
    assert API_KEY not in "".join(traceback.format_exception(raised.value))


def test_a_sync_against_a_failing_server_never_prints_the_key(corpus, make_runtime, caplog,
                                                              tmp_path):
    caplog.set_level(logging.DEBUG)  # every logger, down to httpx/httpcore
    with QdrantStub() as stub:
        rt = make_runtime(corpus, qdrant_url=stub.url, qdrant_api_key=API_KEY,
                          qdrant_retries=1, qdrant_backoff_s=0.01)
        with pytest.raises(QdrantUnavailableError) as raised:
            sync(rt)
    assert any(h.get("api-key") == API_KEY for _, _, h in stub.requests)  # it was in use
    text = "".join(traceback.format_exception(raised.value))
    assert "FRESHNESS_QDRANT_URL" in text and API_KEY not in text
    assert API_KEY not in caplog.text and API_KEY not in repr(rt.settings)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert API_KEY.encode() not in path.read_bytes(), path


@pytest.mark.integration
def test_the_cli_against_a_failing_server_never_prints_the_key(tmp_path, corpus):
    with QdrantStub() as stub:
        env = child_env(QDRANT_API_KEY=API_KEY, FRESHNESS_QDRANT_URL=stub.url,
                        FRESHNESS_QDRANT_RETRIES="1", FRESHNESS_QDRANT_BACKOFF_S="0.01")
        proc = start_cli(["sync", *where(tmp_path)], env, tmp_path / "cli.log")
        code = finish(proc, 120)
    output = (tmp_path / "cli.log").read_text()
    assert code == 2, output
    assert "error: Qdrant" in output and "FRESHNESS_QDRANT_URL" in output
    assert API_KEY not in output
    assert not list((tmp_path / "state").rglob("manifest.json"))  # no state advanced


@contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def loose(root: Path) -> list[str]:
    """Files or folders under `root` that others may write (group or world)."""
    return [f"{p} {stat.filemode(p.stat().st_mode)}" for p in [root, *root.rglob("*")]
            if p.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH)]


def test_state_files_are_never_writable_by_others(corpus, make_runtime, tmp_path):
    rt = make_runtime(corpus)
    with umask(0):  # even under the loosest umask
        assert sync(rt).ok
        (corpus / "alpha" / "pears.md").write_text("Pears again.")  # history files too
        assert sync(rt).ok
        lease = ShardLease(rt.store, rt.collection, "alpha")
        lease.acquire(0)
        assert Path(lease.path).stat().st_mode & 0o777 == 0o644
        lease.release()
    state = tmp_path / "state"
    assert loose(state) == []
    files = [p for p in state.rglob("*") if p.is_file()]
    assert files and all(p.stat().st_mode & 0o777 == 0o644 for p in files)
    assert all(p.stat().st_mode & 0o777 == 0o755 for p in state.rglob("*") if p.is_dir())


def test_the_embedded_index_is_not_writable_by_others_under_the_usual_umask(corpus,
                                                                          make_runtime,
                                                                          tmp_path):
    with umask(0o022):
        assert sync(make_runtime(corpus)).ok
    assert loose(tmp_path / "qdrant") == []


def _shell_calls(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        if name in {"os.system", "os.popen", "subprocess.getoutput",
                    "subprocess.getstatusoutput", "os.execlp", "os.spawnlp"}:
            found.append(f"{path}:{node.lineno} {name}")
        for kw in node.keywords:
            if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant)
                                          and kw.value.value is False):
                found.append(f"{path}:{node.lineno} shell=")
    return found


def test_no_shell_command_is_built_anywhere_in_the_code():
    files = [p for folder in ("freshness", "assets", "sensors")
             for p in (REPO_ROOT / folder).rglob("*.py")]
    assert len(files) > 20
    assert [c for p in files for c in _shell_calls(p)] == []
