"""The OpenAI-compatible endpoint backend against a real HTTP server on 127.0.0.1.

The server is `python -m freshness.embed.server` in a subprocess, serving the packaged
all-MiniLM-L6-v2 through sentence-transformers (Infinity's `[server]` extra conflicts with this
stack's numpy/click pins, see docs). Faults (429, 503, slow answers) come from a small real
HTTP proxy in front of it, so retries are exercised over real sockets.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from freshness.config import DEFAULT_MODEL, Settings
from freshness.embed.endpoint import EndpointEmbedder, EndpointError
from freshness.embed.models import resolve_model
from freshness.errors import ConfigError
from freshness.pipeline.search import search
from freshness.pipeline.sync import sync
from freshness.runtime import Runtime
from freshness.state.runs import load_runs

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    """A real embedding server process on a free port; its base URL (…/v1). Its request log
    goes to a file: a pipe nobody reads fills up and would block the server mid-module."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "freshness.embed.server", "--port", "0", "--device", "cpu"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    line = proc.stdout.readline()
    if not line.startswith("serving"):
        proc.kill()
        pytest.fail(f"embedding server did not start: {line} {log_path.read_text()[-2000:]}")
    url = line.split(" on ", 1)[1].strip()
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:  # do not leave it behind, and say so
        proc.kill()
        proc.wait(timeout=20)
        warnings.warn("the embedding server did not exit within 20 s of SIGTERM: killed",
                      stacklevel=1)


class FaultProxy(ThreadingHTTPServer):
    """Forwards to the server; the first requests answer with the scripted faults."""

    daemon_threads = True

    def __init__(self, target: str, faults: list) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.target, self.faults, self.seen = target, list(faults), []
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FaultProxy

    def log_message(self, *args) -> None:
        pass

    def _forward(self, body: bytes | None) -> None:
        with self.server.lock:
            fault = self.server.faults.pop(0) if self.server.faults else None
            self.server.seen.append((self.command, self.path, fault))
        if isinstance(fault, float):  # a slow answer: sleep past the client's timeout
            time.sleep(fault)
        elif fault is not None:
            data = json.dumps({"error": {"message": f"injected {fault}"}}).encode()
            self.send_response(fault)
            self.send_header("Content-Length", str(len(data)))
            if fault == 429:
                self.send_header("Retry-After", "0")
            self.end_headers()
            self.wfile.write(data)
            return
        request = urllib.request.Request(self.server.target.rsplit("/v1", 1)[0] + self.path,
                                         data=body, method=self.command,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, data = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, data = exc.code, exc.read()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        self._forward(None)

    def do_POST(self) -> None:  # noqa: N802
        self._forward(self.rfile.read(int(self.headers.get("Content-Length") or 0)))


def endpoint_settings(tmp_path: Path, url: str, corpus: Path | None = None, **extra) -> Settings:
    return Settings(source_path=str(corpus) if corpus else None,
                    state_root=str(tmp_path / "state"), index_path=str(tmp_path / "qdrant"),
                    embedding_backend="endpoint", embedding_url=url, batch_size=2,
                    embedding_concurrency=3, lock_timeout_s=5.0, **extra)


def test_sync_and_search_through_the_endpoint_match_the_in_process_model(
        server_url, corpus, tmp_path, embedder):
    rt = Runtime(endpoint_settings(tmp_path, server_url, corpus, cost_unit="tokens"))
    first = sync(rt)
    assert first.ok and first.totals["chunks_embedded"] == first.totals["chunks_total"] > 3
    # Lineage: the endpoint's model name and the revision the server reported (same weights
    # as the packaged model, so the same revision as the in-process backend).
    local_spec = resolve_model()
    assert rt.model_spec.name == DEFAULT_MODEL
    assert rt.model_spec.revision == local_spec.revision
    assert rt.collection == f"chunks-{local_spec.slug}"
    hits = search(rt, "what floats on water", limit=1).hits
    assert hits[0].payload["doc_id"] == "beta/boats.md"
    assert hits[0].payload["model"] == DEFAULT_MODEL
    assert hits[0].payload["model_revision"] == local_spec.revision
    # The vectors equal the in-process model's for the same texts.
    texts = ["Boats float on water and carry cargo.", "Pears are sweet and grainy."]
    remote = rt.embedder.encode(texts)
    local = embedder.encode(texts)
    assert remote.shape == (2, 384)
    assert float(np.min(np.sum(remote * local, axis=1))) > 0.9999
    # Costs are recorded in the configured unit: tokens the server counted.
    run = load_runs(rt.store)[-1]
    assert run["cost_unit"] == "tokens" and run["cost"] == run["tokens"] > 0
    assert run["device"] == f"endpoint:{server_url}"
    # An edit re-embeds one doc through the endpoint; nothing else.
    (corpus / "alpha" / "pears.md").write_text("# Pears\n\nPears ripen after picking.")
    edit = sync(Runtime(endpoint_settings(tmp_path, server_url, corpus)))
    assert edit.ok and edit.totals["chunks_embedded"] == 1


def test_429_503_and_timeouts_are_retried(server_url, tmp_path):
    proxy = FaultProxy(server_url, [429, 503, 502])
    try:
        emb = EndpointEmbedder(proxy.url, DEFAULT_MODEL, resolve_model(), batch_size=2,
                               concurrency=2, backoff_s=0.01, timeout_s=60.0)
        vectors = emb.encode(["one", "two", "three", "four", "five"])
        assert vectors.shape == (5, 384) and emb.retries_done == 3, proxy.seen
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        slow = FaultProxy(server_url, [4.0])  # answers after the client's 1 s timeout
        emb = EndpointEmbedder(slow.url, DEFAULT_MODEL, resolve_model(), timeout_s=1.0,
                               backoff_s=0.01, retries=10)
        assert emb.encode(["late"]).shape == (1, 384)
        assert emb.retries_done >= 1 and slow.seen[0][2] == 4.0
        slow.shutdown()
    finally:
        proxy.shutdown()


def test_retries_exhausted_name_the_endpoint_and_the_fix(server_url):
    proxy = FaultProxy(server_url, [503] * 10)
    try:
        emb = EndpointEmbedder(proxy.url, DEFAULT_MODEL, resolve_model(), retries=2,
                               backoff_s=0.01)
        with pytest.raises(EndpointError, match=r"failed 3 times.*HTTP 503.*RETRIES"):
            emb.encode(["x"])
        assert len(proxy.seen) == 3
    finally:
        proxy.shutdown()
    with pytest.raises(EndpointError, match="check that it is up"):
        EndpointEmbedder("http://127.0.0.1:9/v1", DEFAULT_MODEL, resolve_model(), retries=1,
                         backoff_s=0.01, timeout_s=1.0).encode(["x"])


def test_wrong_model_and_wrong_dimension_are_refused(server_url):
    wrong = EndpointEmbedder(server_url, "text-embedding-3-small", resolve_model())
    with pytest.raises(ConfigError, match="does not serve model 'text-embedding-3-small'.*"
                                          "all-MiniLM-L6-v2"):
        wrong.warm()
    with pytest.raises(ConfigError, match="HTTP 404.*not served"):
        wrong.encode(["x"])  # the POST itself is refused by the server too
    sized = EndpointEmbedder(server_url, DEFAULT_MODEL, resolve_model(), expected_dim=768)
    with pytest.raises(ConfigError, match="returned 384-d vectors.*expected 768-d"):
        sized.encode(["x"])
    with pytest.raises(ConfigError, match="not an http"):
        EndpointEmbedder("127.0.0.1:8080", DEFAULT_MODEL, resolve_model())


def test_pinned_revision_and_secret_stay_out_of_reprs(server_url, tmp_path):
    settings = endpoint_settings(tmp_path, server_url, model_revision="v7",
                                 embedding_api_key="sk-secret")
    rt = Runtime(settings)
    assert rt.model_spec.revision == "v7" and rt.collection.endswith("-v7")
    assert "sk-secret" not in repr(settings) and "sk-secret" not in repr(rt.embedder)
    assert rt.embedder.encode(["hello"]).shape == (1, 384)  # the key is sent, not refused


def test_the_server_stops_on_sigterm_even_if_its_parent_ignored_it(tmp_path):
    """docker stop / Kubernetes send SIGTERM; an ignored SIGTERM is inherited across exec (a
    test run's process had one), so the server installs its own handler and exits cleanly."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(tmp_path / "server.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "freshness.embed.server", "--port", "0", "--device", "cpu"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log, text=True,
            preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN))
    try:
        assert proc.stdout.readline().startswith("serving")
        proc.terminate()
        assert proc.wait(timeout=20) == 0  # a clean exit, the socket closed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
