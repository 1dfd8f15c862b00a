"""Issue 13, class 3: the invariant, checked by a stateful property test.

A hypothesis `RuleBasedStateMachine` interleaves random edits, adds, deletes, shard removals,
hostile entries (links out of the root, FIFOs, undecodable names), lost index folders, model
changes (a new revision = a new collection, blue/green) and crashes at random instants: a hook
on the fault points raises at the N-th effect boundary of any kind (state file written but not
renamed, each index batch, lease taken, chunking, manifest, alias ...), N drawn at random.
After every sync that reports ok, and after the recovery run that must follow every crash:

  the served collection is the current model's, and its points are exactly the chunks of the
  readable docs inside the source root at their current content (compared with an oracle
  kept by the test, not read back through the source), with the current model revision on
  every payload; every hostile entry is named in the report; `verify` agrees (manifest ==
  index, every payload checked).

Bounded for CI (derandomized, ~1-2 min on 2 cores with the packaged MiniLM: the corpora are a
few one-paragraph docs, so the real model costs little). Soak mode: FRESHNESS_SOAK=1 (random
seeds, many more and longer runs; FRESHNESS_SOAK_EXAMPLES / FRESHNESS_SOAK_STEPS size it).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import hypothesis.strategies as st
import pyarrow as pa
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from reliability_helpers import runtime

from freshness.integrity.verify import verify
from freshness.pipeline.sync import sync
from freshness.util import faults

SOAK = os.environ.get("FRESHNESS_SOAK") == "1"
# After a mutation: no run (half the time), a plain sync, or a sync killed at boundary N.
RUNS = st.one_of(st.none(), st.none(), st.just(0), st.integers(1, 12))
SHARDS = ("alpha", "beta", "default")  # default = files directly in the root
NAMES = ("a", "b", "c", "d")
WORDS = ("apples", "boats", "cargo", "delta", "engines", "ferns", "gears", "harbours",
         "islands", "jetties", "kelp", "lanterns")
SECRET = "TOP SECRET launch code 0000"
TOTALS: Counter = Counter()  # rule counts over a whole run, printed by the test

class Crash(BaseException):
    """A kill at a fault point: not an Exception, so no handler in the code swallows it."""


def _text(seed: int, paragraphs: int) -> str:
    words = [WORDS[(seed + i * 7) % len(WORDS)] for i in range(12)]
    return "\n\n".join(f"Note {seed}-{p}: " + " ".join(words[p:p + 6]) + "."
                       for p in range(paragraphs))


class TruthMachine(RuleBasedStateMachine):
    """The corpus, an oracle of what the source holds, and the runs under test."""

    def __init__(self, embedder) -> None:
        super().__init__()
        self.embedder = embedder
        self.case = Path(tempfile.mkdtemp(prefix="truth-"))
        self.corpus = self.case / "corpus"
        self.corpus.mkdir()
        (self.case / "outside.md").write_text(SECRET)
        self.docs: dict[str, str] = {}  # doc_id -> content: the oracle
        self.hostile: set[str] = set()  # doc ids (as reported) that must be named as skipped
        self.revision = "r1"
        self.steps: Counter = Counter()

    def teardown(self) -> None:
        faults.set_hook(None)
        TOTALS.update(self.steps)
        shutil.rmtree(self.case, ignore_errors=True)

    # -- helpers -------------------------------------------------------------------------
    def _rt(self):
        return runtime(self.case, self.embedder, model_revision=self.revision,
                       lock_timeout_s=5.0)

    def _path(self, shard: str, name: str) -> tuple[str, Path]:
        doc_id = f"{name}.md" if shard == "default" else f"{shard}/{name}.md"
        return doc_id, self.corpus / doc_id

    def _write(self, doc_id: str, text: str) -> None:
        path = self.corpus / doc_id
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or (path.exists() and not path.is_file()):
            path.unlink()
        path.write_text(text)
        self.docs[doc_id] = text
        self.hostile.discard(doc_id)

    def _check(self, result) -> None:
        """The invariant after a sync that reports ok."""
        rt = self._rt()
        assert result.ok, result.summary()
        skipped = {s["doc_id"] for s in result.summary()["skipped"]}
        assert self.hostile <= skipped, (self.hostile - skipped, result.summary())
        assert rt.serving_collection() == rt.collection
        expected = self._expected_chunks(rt)
        served = self._served_chunks(rt)
        assert served == expected, {"missing": sorted(set(expected) - set(served)),
                                    "extra": sorted(set(served) - set(expected))}
        checks = verify(rt, sample=None)  # manifests == index, every payload checked
        assert all(c.ok for c in checks), [c.as_dict() for c in checks if not c.ok]

    def _expected_chunks(self, rt) -> dict[tuple[str, str], int]:
        docs = pa.table({"doc_id": list(self.docs), "content": list(self.docs.values())})
        chunks = rt.chunker.chunk_docs(docs)
        return dict(Counter(zip(chunks["doc_id"].to_pylist(),
                                chunks["content_hash"].to_pylist())))

    def _served_chunks(self, rt) -> dict[tuple[str, str], int]:
        served: Counter = Counter()
        collection = rt.serving_collection()
        for shard in rt.index.shard_names(collection):
            ids = rt.index.shard_point_ids(collection, shard)
            if not ids:
                continue
            with rt.index.open_shard(collection, shard) as session:
                for payload in session.retrieve(sorted(ids)).values():
                    assert payload["model_revision"] == self.revision, payload
                    assert payload["shard"] == shard
                    served[(payload["doc_id"], payload["content_hash"])] += 1
        return dict(served)

    # -- rules -----------------------------------------------------------------------------
    @initialize(seed=st.integers(0, 10_000))
    def first_build(self, seed: int) -> None:
        for i, shard in enumerate(SHARDS[:2]):
            self._write(self._path(shard, "a")[0], _text(seed + i, 2))
        self._check(sync(self._rt()))

    @rule(shard=st.sampled_from(SHARDS), name=st.sampled_from(NAMES),
          seed=st.integers(0, 10_000), paragraphs=st.integers(1, 3), run=RUNS)
    def add_or_replace_doc(self, shard: str, name: str, seed: int, paragraphs: int,
                           run: int | None = None) -> None:
        self.steps["add_or_replace_doc"] += 1
        self._write(self._path(shard, name)[0], _text(seed, paragraphs))
        self._run(run)

    @precondition(lambda self: self.docs)
    @rule(data=st.data(), seed=st.integers(0, 10_000), run=RUNS)
    def edit_one_paragraph(self, data, seed: int, run: int | None = None) -> None:
        self.steps["edit_one_paragraph"] += 1
        doc_id = data.draw(st.sampled_from(sorted(self.docs)))
        paragraphs = self.docs[doc_id].split("\n\n")
        paragraphs[seed % len(paragraphs)] += f" Edited {seed}."
        self._write(doc_id, "\n\n".join(paragraphs))
        self._run(run)

    @precondition(lambda self: len(self.docs) > 1)
    @rule(data=st.data(), run=RUNS)
    def delete_doc(self, data, run: int | None = None) -> None:
        self.steps["delete_doc"] += 1
        doc_id = data.draw(st.sampled_from(sorted(self.docs)))
        (self.corpus / doc_id).unlink()
        del self.docs[doc_id]
        self._run(run)

    @precondition(lambda self: len({d.split("/")[0] for d in self.docs if "/" in d}) > 1)
    @rule(shard=st.sampled_from(SHARDS[:2]), run=RUNS)
    def remove_shard_folder(self, shard: str, run: int | None = None) -> None:
        self.steps["remove_shard_folder"] += 1
        shutil.rmtree(self.corpus / shard, ignore_errors=True)
        for doc_id in [d for d in self.docs if d.startswith(f"{shard}/")]:
            del self.docs[doc_id]
        self.hostile = {h for h in self.hostile if not h.startswith(f"{shard}/")}
        self._run(run)

    @rule(shard=st.sampled_from(SHARDS), kind=st.sampled_from(["link_out", "fifo", "bad_name"]),
          run=RUNS)
    def add_hostile_entry(self, shard: str, kind: str, run: int | None = None) -> None:
        self.steps["add_hostile_entry"] += 1
        folder = self.corpus if shard == "default" else self.corpus / shard
        folder.mkdir(exist_ok=True)
        prefix = "" if shard == "default" else f"{shard}/"
        if kind == "link_out":
            doc_id, path = self._path(shard, "leak")
            if not path.is_symlink():
                path.unlink(missing_ok=True)
                path.symlink_to(self.case / "outside.md")
        elif kind == "fifo":
            doc_id, path = self._path(shard, "pipe")
            if not path.exists():
                os.mkfifo(path)
        else:
            doc_id = prefix + "caf\\xe9.md"
            with open(os.fsencode(folder) + b"/caf\xe9.md", "wb") as out:
                out.write(b"an undecodable name")
        self.docs.pop(doc_id, None)
        self.hostile.add(doc_id)
        self._run(run)

    @rule(shard=st.sampled_from(SHARDS), run=RUNS)
    def lose_index_folder(self, shard: str, run: int | None = None) -> None:
        self.steps["lose_index_folder"] += 1
        rt = self._rt()
        collection = rt.serving_collection()
        if collection:
            shutil.rmtree(Path(rt.settings.index_path) / "collections" / collection / shard,
                          ignore_errors=True)
        self._run(run)

    @rule(run=RUNS)
    def change_model(self, run: int | None = None) -> None:
        self.steps["change_model"] += 1
        self.revision = "r2" if self.revision == "r1" else "r1"
        self._run(run)

    @rule()
    def sync_ok(self) -> None:
        self._run(0)

    @rule(nth=st.integers(1, 40), only=st.sampled_from([None, "state_write", "index_write"]))
    def sync_killed_then_recovered(self, nth: int, only: str | None) -> None:
        self._run(nth, only)

    def _run(self, run: int | None, only: str | None = None) -> None:
        """None: no run; 0: a sync, then the check; N: a sync killed at the N-th boundary
        (of kind `only`, default any), then the recovery sync and the check."""
        if run is None:
            return
        if run == 0:
            self.steps["sync_ok"] += 1
            self._check(sync(self._rt()))
            return
        nth = run
        seen: dict = Counter()

        def kill(point: str) -> None:
            if only is None or point == only:
                seen["hits"] += 1
                if seen["hits"] == nth:
                    seen["point"] = point
                    raise Crash(point)

        faults.set_hook(kill)
        try:
            sync(self._rt())
            crashed = False
        except Crash:
            crashed = True
        finally:
            faults.set_hook(None)
        self.steps["crash" if crashed else "crash_missed"] += 1
        if crashed:
            self.steps[f"crash_at_{seen['point']}"] += 1
        self._check(sync(self._rt()))  # the next run restores the invariant

    @invariant()
    def no_lease_left(self) -> None:
        assert not list((self.case / "state").rglob("lease.json")) if \
            (self.case / "state").exists() else True


def _settings() -> settings:
    if SOAK:
        return settings(max_examples=int(os.environ.get("FRESHNESS_SOAK_EXAMPLES", "200")),
                        stateful_step_count=int(os.environ.get("FRESHNESS_SOAK_STEPS", "30")),
                        deadline=None, derandomize=False,
                        suppress_health_check=list(HealthCheck))
    return settings(max_examples=4, stateful_step_count=12, deadline=None, derandomize=True,
                    suppress_health_check=list(HealthCheck), print_blob=True)


def test_invariant_holds_under_random_edits_and_crashes(embedder):
    TOTALS.clear()
    run_state_machine_as_test(lambda: TruthMachine(embedder), settings=_settings())
    print("truth machine:", dict(sorted(TOTALS.items())))
    assert TOTALS["crash"] > 0 and TOTALS["sync_ok"] > 0  # the run did what it claims
