"""Two runs of the same shard at once: the shard lease makes one wait, and the other never
writes on a stale plan. Runs of different shards in parallel are covered by
tests/integration/test_parallel_shards.py; a sensor tick during a run is covered here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
from reliability_helpers import (
    assert_converged,
    child_env,
    finish,
    manifest_infos,
    runtime,
    start_cli,
    where,
)

from freshness.errors import StateError
from freshness.index.edge_session import EdgeShardSession
from freshness.pipeline.sync import sync
from freshness.state import layout
from freshness.state.lease import LeaseHeldError, ShardLease
from freshness.state.manifest import HISTORY_SCHEMA
from freshness.state.status import shard_status
from freshness.util.timeutil import iso, utc_now

SEED = {"alpha/apples.md": "# Apples\n\nApples grow on trees in orchards.",
        "alpha/pears.md": "# Pears\n\nPears are sweet and grainy.",
        "beta/boats.md": "# Boats\n\nBoats float on water and carry cargo."}


@pytest.fixture
def case(tmp_path):
    for rel, text in SEED.items():
        (tmp_path / "corpus" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "corpus" / rel).write_text(text)
    return tmp_path


@pytest.mark.integration
def test_two_processes_sync_the_same_shard_at_once(case, embedder):
    procs = [start_cli(["sync", "--shard", "alpha", "--json", *where(case)],
                       child_env(OMP_NUM_THREADS="1"), case / f"run{i}.log") for i in (0, 1)]
    codes = [finish(p) for p in procs]
    outputs = [(case / f"run{i}.log").read_text() for i in (0, 1)]
    assert sorted(codes) in ([0, 0], [0, 1]), outputs
    for code, output in zip(codes, outputs):
        summary = json.loads(output[output.index("{"):])
        if code == 0:
            assert summary["failed_shards"] == {}
        else:  # lost the race: stopped before writing, with the shard and the reason
            error = summary["failed_shards"]["alpha"]
            assert "shard 'alpha'" in error and "committed by another run" in error
            assert "rerun" in error
    embedded = sorted(json.loads(o[o.index("{"):])["totals"].get("chunks_embedded", 0)
                      for o in outputs)
    assert embedded[1] == 2  # the winner embedded both chunks of alpha
    rt = runtime(case, embedder)
    assert manifest_infos(rt)["alpha"]["version"] == 1  # exactly one commit
    assert sync(rt, ["beta"]).ok
    assert_converged(rt)


def _hold(rt, shard: str, **fields) -> ShardLease:
    lease = ShardLease(rt.store, rt.collection, shard, owner="other-run")
    lease.acquire(0)
    if fields:  # rewrite the holder record (another host, a dead pid, an old expiry)
        record = json.loads(rt.store.read_bytes(*lease.segments))
        rt.store.write_bytes(json.dumps({**record, **fields}).encode(), *lease.segments)
    return lease


def _sync_in_thread(rt, shards):
    box: dict = {}
    thread = threading.Thread(target=lambda: box.setdefault("result", sync(rt, shards)))
    thread.start()
    return thread, box


@pytest.fixture
def waiting(monkeypatch):
    """An event set when a run starts waiting for a lease."""
    event = threading.Event()
    original = ShardLease.acquire

    def acquire(self, wait_s):
        event.set()
        return original(self, wait_s)

    monkeypatch.setattr(ShardLease, "acquire", acquire)
    return event


def test_a_run_waits_for_the_lease_and_then_applies(case, embedder, waiting):
    rt = runtime(case, embedder, lock_timeout_s=30.0)
    held = _hold(rt, "alpha")
    thread, box = _sync_in_thread(rt, ["alpha"])
    assert waiting.wait(30)
    thread.join(1.0)
    assert thread.is_alive()  # waiting on the lease, nothing written yet
    assert rt.index.shard_point_ids(rt.collection, "alpha") == set()
    held.release()
    thread.join(30)
    assert box["result"].ok and box["result"].totals["chunks_embedded"] == 2


def test_a_run_that_waited_while_the_shard_was_committed_writes_nothing(case, embedder,
                                                                        waiting):
    rt = runtime(case, embedder)
    assert sync(rt).ok
    (case / "corpus" / "alpha" / "pears.md").write_text("# Pears\n\nPears bruise easily.")
    before = rt.index.shard_point_ids(rt.collection, "alpha")
    held = _hold(rt, "alpha")
    thread, box = _sync_in_thread(rt, ["alpha"])
    assert waiting.wait(30)
    state = rt.shard_state()  # the holder commits a new version meanwhile
    manifest = state.load("alpha")
    state.commit(manifest, manifest.chunks, HISTORY_SCHEMA.empty_table(), dict(manifest.info))
    held.release()
    thread.join(30)
    result = box["result"]
    assert not result.ok
    error = result.shards[0].error
    assert "shard 'alpha' was committed by another run (version 1 -> 2)" in error
    assert rt.index.shard_point_ids(rt.collection, "alpha") == before  # nothing written
    assert sync(rt).ok  # the rerun converges
    assert_converged(rt)


def test_a_live_holder_makes_the_run_fail_clearly_after_the_timeout(case, embedder):
    rt = runtime(case, embedder, lock_timeout_s=0.3)
    held = _hold(rt, "alpha", host="worker-7", pid=4242)
    try:
        result = sync(rt, ["alpha"])
    finally:
        held.release()
    error = result.shards[0].error
    assert not result.ok
    for part in ("shard 'alpha' is being synced by run other-run", "pid 4242",
                 "host worker-7", "FRESHNESS_LOCK_TIMEOUT_S"):
        assert part in error, error
    assert manifest_infos(rt) == {}


def test_a_killed_holder_lease_is_taken_over(case, embedder):
    rt = runtime(case, embedder, lock_timeout_s=0.3)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    _hold(rt, "alpha", pid=int(dead.stdout))  # same host, process gone: taken at once
    expired = (utc_now() - timedelta(seconds=1))
    _hold(rt, "beta", host="gone-host", pid=1, expires_at=iso(expired))  # other host: expiry
    result = sync(rt)
    assert result.ok, result.summary()
    assert_converged(rt)


def test_an_unreadable_lease_left_by_a_killed_writer_is_taken_over(case, embedder):
    rt = runtime(case, embedder, lock_timeout_s=10.0)
    lease = ShardLease(rt.store, rt.collection, "alpha")
    rt.store.write_bytes(b"", *lease.segments)  # killed between create and write
    old = utc_now().timestamp() - 60
    os.utime(lease.path, (old, old))
    assert sync(rt, ["alpha"]).ok


def test_a_lease_never_names_a_path_outside_the_state_root(case, embedder):
    rt = runtime(case, embedder)
    for shard in ("../x", "", "..", "a\x00b", "a//b"):
        with pytest.raises(StateError, match="unsafe state path segment"):
            ShardLease(rt.store, rt.collection, shard)
    nested = ShardLease(rt.store, rt.collection, "a/b")  # a nested name is one folder
    assert Path(nested.path).parent.parent == Path(rt.store.path(*layout.shards_dir(rt.collection)))
    with pytest.raises(LeaseHeldError):  # and a second owner cannot take a held lease
        _hold(rt, "alpha")
        ShardLease(rt.store, rt.collection, "alpha").acquire(0)


def test_a_sensor_tick_during_a_run_corrupts_nothing(case, embedder, monkeypatch):
    from assets.resources import FreshnessResource
    from sensors.source_change_sensor import source_change_sensor

    rt = runtime(case, embedder)
    assert sync(rt).ok
    (case / "corpus" / "alpha" / "apples.md").write_text("# Apples\n\nApples keep in cellars.")
    resource = FreshnessResource(source_path=str(case / "corpus"),
                                 state_root=str(case / "state"),
                                 index_path=str(case / "qdrant"), device="cpu")
    instance = dg.DagsterInstance.ephemeral()
    ticks: list = []
    original = EdgeShardSession.upsert

    def upsert_with_a_tick(self, points):
        if not ticks:  # mid-apply: the run holds the lease and the shard's index folder
            assert rt.store.exists("collections", rt.collection, "shards", "alpha",
                                   "lease.json")
            context = dg.build_sensor_context(instance=instance,
                                              resources={"freshness": resource})
            ticks.append(source_change_sensor(context))
        return original(self, points)

    monkeypatch.setattr(EdgeShardSession, "upsert", upsert_with_a_tick)
    result = sync(rt, ["alpha"])
    assert result.ok and result.totals["chunks_embedded"] == 1
    tick = ticks[0]
    assert [r.tags["freshness/shards"] for r in tick.run_requests] in ([], ["alpha"])
    assert_converged(rt)
    status = {s: rt.shard_state().read_pending(s) for s in ("alpha", "beta")}
    assert status["alpha"]["manifest_version"] == 1  # recorded against the old version ...
    rows = {r["shard"]: r for r in shard_status(rt.shard_state()).to_pylist()}
    assert rows["alpha"]["pending_docs"] == 0  # ... so it is ignored once version 2 is in
    context = dg.build_sensor_context(instance=instance, resources={"freshness": resource},
                                      cursor=tick.cursor)
    monkeypatch.setattr(EdgeShardSession, "upsert", original)
    assert source_change_sensor(context).run_requests == []
