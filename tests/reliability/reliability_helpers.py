"""Helpers for the reliability suite: CLI subprocesses, runtimes per case, convergence checks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from freshness.config import Settings
from freshness.integrity.verify import verify
from freshness.runtime import Runtime
from freshness.util.timeutil import as_utc

REPO_ROOT = Path(__file__).resolve().parents[2]
TIMESTAMP_KEYS = ("last_source_change_seen", "last_embedded_at", "last_synced_at")


def child_env(**extra: str) -> dict[str, str]:
    """This environment minus any FRESHNESS_*/QDRANT_* setting, offline, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FRESHNESS_", "QDRANT_"))}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def where(case: Path) -> list[str]:
    """CLI flags placing a case's corpus, state and embedded index."""
    return ["--path", str(case / "corpus"), "--state-root", str(case / "state"),
            "--index-path", str(case / "qdrant"), "--device", "cpu"]


def start_cli(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """`python -m freshness.cli.main ARGS` in the background; stdout+stderr to `log`."""
    out = open(log, "wb")  # noqa: SIM115 - the child owns it; closed when we wait
    proc = subprocess.Popen([sys.executable, "-m", "freshness.cli", *args], cwd=REPO_ROOT,
                            env=env, stdout=out, stderr=subprocess.STDOUT)
    proc.log_file = out  # type: ignore[attr-defined]
    return proc


def finish(proc: subprocess.Popen, timeout_s: float = 240) -> int:
    try:
        return proc.wait(timeout_s)
    finally:
        proc.log_file.close()  # type: ignore[attr-defined]


def runtime(case: Path, embedder, **settings) -> Runtime:
    """The in-process runtime of a case (same paths as the CLI flags, shared model)."""
    values = dict(source_path=str(case / "corpus"), state_root=str(case / "state"),
                  index_path=str(case / "qdrant"), device="cpu", lock_timeout_s=20.0)
    values.update(settings)
    return Runtime(Settings(**values), embedder=embedder)


def manifest_infos(rt: Runtime) -> dict[str, dict]:
    """manifest.json of every shard folder of the runtime's collection."""
    state = rt.shard_state()
    return {s: rt.store.read_json("collections", rt.collection, "shards", s, "manifest.json")
            for s in state.shards()}


def assert_timestamps_monotonic(*snapshots: dict[str, dict]) -> None:
    """Per shard and key, each snapshot's timestamp is >= the one before (where both exist)."""
    for earlier, later in zip(snapshots, snapshots[1:]):
        for shard, before in earlier.items():
            after = later.get(shard)
            assert after is not None, f"shard {shard} lost its manifest"
            for key in TIMESTAMP_KEYS:
                b, a = as_utc(before.get(key)), as_utc(after.get(key))
                if b is not None:
                    assert a is not None and a >= b, f"{shard}.{key} went back: {b} -> {a}"


def assert_converged(rt: Runtime) -> dict[str, int]:
    """Index == manifests == source, exactly; returns chunks per shard."""
    checks = verify(rt, deep=True)
    assert all(c.ok for c in checks), [c.as_dict() for c in checks if not c.ok]
    source_shards = rt.source.discover().shards
    state = rt.shard_state()
    assert sorted(state.shards()) == sorted(source_shards)
    assert rt.serving_collection() == rt.collection
    chunks_per_shard = {}
    for shard in source_shards:
        manifest = state.load(shard)
        rows = manifest.chunks.to_pylist()
        ids = [r["point_id"] for r in rows]
        assert len(ids) == len(set(ids)), f"{shard}: duplicate point ids in the manifest"
        positions = Counter((r["doc_id"], r["chunk_index"]) for r in rows)
        assert max(positions.values(), default=1) == 1, f"{shard}: duplicate doc/chunk rows"
        assert manifest.info["chunks"] == len(rows)
        assert manifest.info["docs"] == len({r["doc_id"] for r in rows})
        assert rt.store.exists("collections", rt.collection, "shards", shard,
                               manifest.info["chunks_file"])
        assert not rt.store.exists("collections", rt.collection, "shards", shard,
                                   "lease.json"), f"{shard}: lease left behind"
        indexed = rt.index.shard_point_ids(rt.collection, shard)
        assert indexed == set(ids), (f"{shard}: {len(indexed - set(ids))} orphan, "
                                     f"{len(set(ids) - indexed)} missing points")
        listing = rt.source.listing(shard)
        docs = rt.source.read(shard, listing.docs["doc_id"].to_pylist())
        expected = rt.chunker.chunk_docs(docs)
        assert sorted(expected["point_id"].to_pylist()) == sorted(ids)
        with rt.index.open_shard(rt.collection, shard) as session:
            payloads = session.retrieve(ids)
        by_id = {r["point_id"]: r for r in rows}
        for point_id, payload in payloads.items():
            row = by_id[point_id]
            assert (payload["doc_id"], payload["chunk_index"], payload["content_hash"]) == \
                (row["doc_id"], row["chunk_index"], row["content_hash"])
            assert payload["shard"] == shard
            assert payload["model"] == rt.model_spec.name
            assert payload["model_revision"] == rt.model_spec.revision
            assert as_utc(payload["embedded_at"]) is not None
        chunks_per_shard[shard] = len(rows)
    if hasattr(rt.index, "shard_names"):  # embedded: no index folder for a shard we lack
        assert set(rt.index.shard_names(rt.collection)) <= set(source_shards)
    return chunks_per_shard


class Blocked(BaseException):
    """Raised by the alarm: not an OSError, so no `except OSError` in the code hides it."""


@pytest.fixture(autouse=True)
def no_hang():
    """Imported by a test module: a test that blocks (a FIFO opened for reading blocks
    forever) fails after 20 s instead of hanging."""
    def fail(*_):
        raise Blocked("blocked: a non-regular file was opened")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)
