"""Issue 13, class 3 with real kills: `freshness sync` processes SIGKILLed at random instants of
their write phase (not at named points): the test waits for the first shard lease to appear,
sleeps a random 0-400 ms, and kills. Whatever that leaves (unflushed WAL, a stale lease, temp
files, half the shards committed), the next run must restore the invariant.

CI: two kills (seeded). Soak: FRESHNESS_SOAK=1 runs FRESHNESS_SOAK_KILLS (default 20) with
random seeds.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
from reliability_helpers import assert_converged, child_env, finish, runtime, start_cli, where

from freshness.pipeline.sync import sync

pytestmark = pytest.mark.integration
SOAK = os.environ.get("FRESHNESS_SOAK") == "1"
KILLS = int(os.environ.get("FRESHNESS_SOAK_KILLS", "20")) if SOAK else 2
SLOW_WRITES = dict(FRESHNESS_UPSERT_BATCH="1", OMP_NUM_THREADS="1")


def _write_corpus(corpus: Path, round_: int) -> None:
    for shard in ("alpha", "beta", "gamma"):
        for n in range(3):
            path = corpus / shard / f"doc{n}.md"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"# {shard} {n}\n\nRound {round_}: {shard} notes number {n}.\n\n"
                            f"Second paragraph of {shard} {n}, round {round_}.")


def _kill_in_write_phase(proc, state: Path, rng: random.Random, timeout_s: float = 240) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if any(state.rglob("lease.json")):
            time.sleep(rng.uniform(0.0, 0.4))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                return "killed"
            return "finished first"
        time.sleep(0.005)
    return "finished first" if proc.poll() is not None else "timeout"


def test_sync_killed_at_random_instants_converges(tmp_path, embedder):
    rng = random.Random(None if SOAK else 13)
    corpus = tmp_path / "corpus"
    _write_corpus(corpus, 0)
    rt = runtime(tmp_path, embedder)
    assert sync(rt).ok
    outcomes = []
    for round_ in range(1, KILLS + 1):
        _write_corpus(corpus, round_)  # every doc edited: a write phase in every shard
        if round_ % 2 == 0:
            (corpus / "beta" / f"doc{round_ % 3}.md").unlink()
        proc = start_cli(["sync", *where(tmp_path)], child_env(**SLOW_WRITES),
                         tmp_path / f"run{round_}.log")
        outcome = _kill_in_write_phase(proc, tmp_path / "state", rng)
        finish(proc)
        outcomes.append(outcome)
        assert outcome != "timeout", (tmp_path / f"run{round_}.log").read_text()[-2000:]
        result = sync(rt)  # the next run restores the invariant
        assert result.ok, result.summary()
        assert_converged(rt)
        again = sync(rt)
        assert again.totals["chunks_embedded"] == 0 and again.totals["chunks_retired"] == 0
    print("random kills:", outcomes)
    assert "killed" in outcomes
