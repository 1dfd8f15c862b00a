"""An unreachable or failing Qdrant server: retries with backoff, then a clear failure that
advances no state; the next run against a working index converges."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from qdrant_stub import ERROR_500, QdrantStub, closed_port_url, snapshot
from reliability_helpers import assert_converged, manifest_infos, runtime

from freshness.index.client import ClientIndex, QdrantUnavailableError
from freshness.pipeline.sync import sync

pytestmark = pytest.mark.filterwarnings("ignore:Failed to obtain server version")
FAST_RETRIES = dict(qdrant_retries=2, qdrant_backoff_s=0.01)


@pytest.fixture
def indexed(tmp_path, corpus, embedder):
    """A corpus indexed into a working (in-memory) qdrant-client index, then edited."""
    case = tmp_path
    assert corpus == case / "corpus"
    working = ClientIndex(url=":memory:")
    rt = runtime(case, embedder)
    rt.index = working
    assert sync(rt).ok
    (corpus / "alpha" / "pears.md").write_text("# Pears\n\nPears ripen off the tree.")
    (corpus / "beta" / "kites.md").write_text("Kites fly when the wind blows.")
    return rt, working


def _server_runtime(case: Path, embedder, url: str):
    """The index a run gets from Settings when FRESHNESS_QDRANT_URL names `url`."""
    return runtime(case, embedder, qdrant_url=url, **FAST_RETRIES).index


def _fails_clearly_and_advances_nothing(rt, working, failing) -> None:
    state = Path(rt.settings.state_root)
    before = snapshot(state)
    rt.index = failing
    with pytest.raises(QdrantUnavailableError) as raised:
        sync(rt)
    message = str(raised.value)
    assert "after 3 attempts" in message and "FRESHNESS_QDRANT_URL" in message
    assert snapshot(state) == before  # no manifest, pending or run record moved
    rt.index = working  # the next run, against a working server
    result = sync(rt)
    assert result.ok and result.totals["chunks_embedded"] == 2
    assert_converged(rt)


def test_closed_port_fails_clearly_and_the_next_run_converges(indexed, embedder):
    rt, working = indexed
    failing = _server_runtime(Path(rt.settings.source_path).parent, embedder,
                              closed_port_url())
    _fails_clearly_and_advances_nothing(rt, working, failing)


def test_server_errors_are_retried_then_fail_clearly(indexed, embedder):
    rt, working = indexed
    with QdrantStub() as stub:
        failing = _server_runtime(Path(rt.settings.source_path).parent, embedder, stub.url)
        _fails_clearly_and_advances_nothing(rt, working, failing)
    calls: dict[tuple[str, str], int] = {}
    for method, path, _ in stub.requests:
        if path == "/":  # qdrant-client's version probe, not one of our calls
            continue
        calls[(method, path)] = calls.get((method, path), 0) + 1
    assert calls and all(n % 3 == 0 for n in calls.values()), calls  # 1 try + 2 retries each


def test_transient_errors_are_retried_until_the_server_answers():
    def reply(method, path, n):
        if n == 0:
            return 503, {"status": {"error": "starting"}, "time": 0.0}
        if n == 1:
            return ERROR_500
        return 200, {"result": {"exists": False}, "status": "ok", "time": 0.0}

    with QdrantStub(reply) as stub:
        index = ClientIndex(url=stub.url, retries=3, backoff_s=0.01)
        assert index.shard_point_ids("chunks-x", "alpha") == set()
    assert [p for _, p, _ in stub.requests if p != "/"] == ["/collections/chunks-x/exists"] * 3


class FlakyClient:
    """A qdrant-client whose chosen methods fail (transiently) the first `times` calls."""

    def __init__(self, client, fail: dict[str, int]) -> None:
        self._client, self._fail, self.calls = client, dict(fail), {}

    def __getattr__(self, name):
        target = getattr(self._client, name)
        if name not in self._fail:
            return target

        def call(*args, **kwargs):
            from qdrant_client.http.exceptions import ResponseHandlingException

            self.calls[name] = self.calls.get(name, 0) + 1
            if self.calls[name] <= self._fail[name]:
                raise ResponseHandlingException(ConnectionError("connection reset"))
            return target(*args, **kwargs)

        return call


def test_a_server_failing_during_the_write_phase_advances_nothing(indexed):
    rt, working = indexed
    state = Path(rt.settings.state_root)
    before_state = _without_runs(snapshot(state))
    before_points = rt.index.shard_point_ids(rt.collection, "alpha")
    flaky = FlakyClient(working.client, {"upsert": 100})
    rt.index = ClientIndex(client=flaky, retries=2, backoff_s=0.01)
    result = sync(rt)
    failed = {s.shard: s.error for s in result.shards if not s.ok}
    assert set(failed) == {"alpha", "beta"} and flaky.calls["upsert"] == 6
    assert all("upsert failed after 3 attempts" in e and "FRESHNESS_QDRANT_URL" in e
               for e in failed.values())
    assert _without_runs(snapshot(state)) == before_state  # not advanced
    assert "index_checked_at" not in manifest_infos(rt)["alpha"]
    assert working.shard_point_ids(rt.collection, "alpha") == before_points
    rt.index = ClientIndex(client=FlakyClient(working.client, {"upsert": 2}), retries=3,
                           backoff_s=0.01)  # a server that recovers within the retries
    result = sync(rt)
    assert result.ok and result.totals["chunks_embedded"] == 2
    assert_converged(rt)


def _without_runs(files: dict[str, bytes]) -> dict:
    """State files but run records and the folder source's listing cache (a memo of the
    source's file hashes, not progress of the index); manifests without `index_checked_at`,
    which a failed apply drops on purpose (the next run then reads the index instead of
    trusting it)."""
    kept: dict = {}
    for name, data in files.items():
        if name.startswith(("runs/", "sources/listings/")):
            continue
        if name.endswith("manifest.json"):
            kept[name] = {k: v for k, v in json.loads(data).items() if k != "index_checked_at"}
        else:
            kept[name] = data
    return kept
