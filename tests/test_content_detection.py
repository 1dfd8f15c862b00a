"""Change detection counts content, not file times: a touch, checkout or restore of the same
bytes moves no rate, spike or timestamp."""

import os
import shutil
import time

import pytest

from freshness.pipeline.detect import detect
from freshness.pipeline.sync import sync
from freshness.state.rate_history import RateHistory
from freshness.state.status import shard_status


def _touch_all(corpus, seconds_later: float) -> list:
    paths = sorted(p for p in corpus.rglob("*") if p.is_file())
    stamp = time.time() + seconds_later
    for path in paths:
        os.utime(path, (stamp, stamp))
    return paths


def _seen(rt) -> dict:
    return {r["shard"]: r["last_source_change_seen"]
            for r in shard_status(rt.shard_state()).to_pylist()}


def test_a_touch_or_restore_of_the_same_bytes_is_no_change(corpus, make_runtime, tmp_path):
    rt = make_runtime(corpus)
    sync(rt)
    detect(rt)  # first poll: the baseline
    seen = _seen(rt)

    _touch_all(corpus, 5)  # `touch` of every file, bytes unchanged
    backup = tmp_path / "pears.bak"
    shutil.copy2(corpus / "alpha" / "pears.md", backup)
    (corpus / "alpha" / "pears.md").unlink()
    shutil.copy(backup, corpus / "alpha" / "pears.md")  # a restore: new file, same bytes
    _, summaries = detect(rt)
    history = RateHistory(rt.store)
    for shard in ("alpha", "beta"):
        latest = history.latest(shard)
        assert latest["changed"] == 0 and not latest["spike"], shard
    assert all(s.pending_docs == 0 and not s.rate_spike for s in summaries)
    assert _seen(rt) == seen  # no timestamp moved
    result = sync(rt)
    assert result.totals["chunks_embedded"] == 0 and _seen(rt) == seen

    (corpus / "alpha" / "pears.md").write_text("# Pears\n\nPears ripen off the tree.")
    _, summaries = detect(rt)
    assert history.latest("alpha")["changed"] == 1 and history.latest("beta")["changed"] == 0
    assert {s.shard: s.pending_docs for s in summaries} == {"alpha": 1, "beta": 0}
    assert _seen(rt)["alpha"] > seen["alpha"] and _seen(rt)["beta"] == seen["beta"]


def test_an_edit_of_a_pending_doc_moves_the_last_change_not_the_oldest(corpus, make_runtime):
    """The quiet-time rule waits while the source is busy: a doc edited again while pending
    counts at its latest edit (last change seen), while its oldest pending change stays."""
    rt = make_runtime(corpus)
    sync(rt)
    path = corpus / "alpha" / "pears.md"
    first, again = time.time() - 3600, time.time() - 60
    path.write_text("# Pears\n\nPears ripen off the tree.")
    os.utime(path, (first, first))
    _, summaries = detect(rt)
    (alpha,) = [s for s in summaries if s.shard == "alpha"]
    assert alpha.last_source_change_seen.timestamp() == pytest.approx(first, abs=1)
    path.write_text("# Pears\n\nPears ripen off the tree, in a week.")
    os.utime(path, (again, again))
    _, summaries = detect(rt)
    (alpha,) = [s for s in summaries if s.shard == "alpha"]
    assert alpha.pending_docs == 1
    assert alpha.oldest_pending_change.timestamp() == pytest.approx(first, abs=1)
    assert alpha.last_source_change_seen.timestamp() == pytest.approx(again, abs=1)
