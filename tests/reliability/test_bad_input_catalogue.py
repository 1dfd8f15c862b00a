"""Bad input: every case named, skipped or refused, and nothing indexed is lost.

Already covered elsewhere (not repeated): non-UTF-8 / binary / empty / oversized files and
unsafe shard folders in a folder source (tests/test_sources.py), the same after indexing and
a vanished shard folder (tests/test_sync.py), duplicate ids / unsafe shards / future and naive
timestamps in a table source (tests/test_sources.py, tests/test_sync.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from reliability_helpers import assert_converged, assert_timestamps_monotonic, manifest_infos

from freshness.cli import repair as cli_repair
from freshness.embed.chunking import Chunker
from freshness.errors import SourceError, StateError
from freshness.index.base import PointRecord
from freshness.index.client import ClientIndex
from freshness.index.edge import EdgeIndex
from freshness.integrity.repair import broken_shards, repair_shard
from freshness.pipeline.detect import detect_shard
from freshness.pipeline.sync import sync
from freshness.sources import FolderSource, TableSource
from freshness.state.layout import shard_from_segment, shard_segment
from freshness.state.manifest import MANIFEST_SCHEMA, ShardStateStore
from freshness.state.store import StateStore
from freshness.util.timeutil import utc_now

TEN_MB = 10_000_000


def big_text(size: int) -> str:
    """~`size` bytes: short paragraphs, and every 50th one far over the model's limit."""
    words = ["river", "stone", "cloud", "orbit", "lumen", "delta", "x9", "quartz"]
    rng = np.random.default_rng(0)
    paragraphs, total, i = [], 0, 0
    while total < size:
        n = 3000 if i % 50 == 0 else 40
        paragraph = f"P{i} " + " ".join(words[k] for k in rng.integers(0, len(words), n))
        paragraphs.append(paragraph)
        total += len(paragraph) + 2
        i += 1
    return "\n\n".join(paragraphs)


def assert_covers(chunker: Chunker, text: str) -> int:
    """Every non-space character is in a chunk of <= max_tokens tokens; returns chunk count."""
    spans = chunker.spans(text)
    assert all(s.n_tokens <= chunker.max_tokens for s in spans)
    depth = np.zeros(len(text) + 1, np.int32)
    np.add.at(depth, [s.start for s in spans], 1)
    np.add.at(depth, [s.end for s in spans], -1)
    covered = np.cumsum(depth)[:-1] > 0
    codes = np.frombuffer(text.encode("utf-32-le"), np.uint32)
    visible = ~np.isin(codes, [ord(c) for c in " \n\t\r"])
    assert not (visible & ~covered).any(), "text left out of every chunk"
    return len(spans)


# -- oversized documents ------------------------------------------------------------------

@pytest.fixture(scope="module")
def ten_mb_doc() -> str:
    return big_text(TEN_MB)


def test_a_10_mb_doc_is_skipped_with_the_setting_to_raise(corpus, make_runtime, ten_mb_doc):
    (corpus / "alpha" / "huge.md").write_text(ten_mb_doc)
    result = sync(make_runtime(corpus))
    skips = {s.doc_id: s.reason for r in result.shards for s in r.skips}
    assert result.ok and "FRESHNESS_MAX_DOC_BYTES" in skips["alpha/huge.md"]
    assert f"{len(ten_mb_doc)} bytes" in skips["alpha/huge.md"]
    assert result.totals["docs_total"] == 4 and result.totals["docs_skipped"] == 1


def test_a_10_mb_doc_under_a_raised_limit_is_chunked_not_truncated(corpus, ten_mb_doc):
    (corpus / "alpha" / "huge.md").write_text(ten_mb_doc)
    source = FolderSource(corpus, max_doc_bytes=2 * TEN_MB)
    assert "alpha/huge.md" in source.listing("alpha").docs["doc_id"].to_pylist()
    content = source.read("alpha", ["alpha/huge.md"])["content"][0].as_py()
    assert content == ten_mb_doc  # read whole (embedding it on CPU would take too long)
    from freshness.embed.models import resolve_model

    spec = resolve_model()
    chunker = Chunker.for_model(spec.location, spec.max_seq_length)
    assert assert_covers(chunker, content) > 5000


def test_a_doc_over_the_model_limit_is_chunked_within_it(corpus, make_runtime):
    long_paragraph = " ".join(f"fact{i}" for i in range(1500))  # ~4,500 word pieces
    text = f"# Facts\n\n{long_paragraph}\n\nA closing line."
    (corpus / "alpha" / "facts.md").write_text(text)
    rt = make_runtime(corpus)
    assert sync(rt).ok
    manifest = rt.shard_state().load("alpha")
    rows = [r for r in manifest.chunks.to_pylist() if r["doc_id"] == "alpha/facts.md"]
    limit = rt.embedder.model.max_seq_length  # the model truncates past this: never reached
    assert len(rows) > 10 and all(r["n_tokens"] + 2 <= limit for r in rows)
    with rt.index.open_shard(rt.collection, "alpha") as session:
        texts = [p["text"] for p in session.retrieve([r["point_id"] for r in rows]).values()]
    words = set(" ".join(texts).split())
    assert {f"fact{i}" for i in range(1500)} <= words and "closing" in words


# -- encodings, duplicates, timestamps (table and folder sources) --------------------------

def table(tmp_path: Path, rows: list[dict], name: str = "docs.parquet") -> TableSource:
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / name)
    return TableSource.from_parquet(tmp_path / name)


def test_non_utf8_bytes_in_a_table_are_skipped(tmp_path):
    pq.write_table(pa.table({"doc_id": ["bad", "good"], "shard": ["s", "s"],
                             "content": pa.array([b"caf\xe9", b"fine text"], pa.binary())}),
                   tmp_path / "bytes.parquet")
    listing = TableSource.from_parquet(tmp_path / "bytes.parquet").listing("s")
    assert listing.docs["doc_id"].to_pylist() == ["good"]
    assert "UTF-8" in listing.skips[0].reason


def test_a_table_with_empty_docs_and_a_missing_id_indexes_the_rest(tmp_path, make_runtime):
    rows = [{"doc_id": "a", "shard": "s", "content": "Owls hunt at night."},
            {"doc_id": "e", "shard": "s", "content": ""},
            {"doc_id": "b", "shard": "s", "content": "   "},
            {"doc_id": "n", "shard": "s", "content": None},
            {"doc_id": None, "shard": "s", "content": "no id"}]
    rt = make_runtime(source=table(tmp_path, rows))
    result = sync(rt)
    reasons = sorted(s.reason.split(":")[0] for r in result.shards for s in r.skips)
    assert reasons == ["empty document"] * 3 + ["row has no doc_id"]
    assert result.ok and result.totals["chunks_total"] == 1
    assert_converged(rt)


def test_a_whitespace_only_table_doc_is_skipped_not_pending_forever(tmp_path, make_runtime):
    rows = [{"doc_id": "a", "shard": "s", "content": "Owls hunt at night."},
            {"doc_id": "w", "shard": "s", "content": " \n\t "}]
    rt = make_runtime(source=table(tmp_path, rows))
    sync(rt)
    assert detect_shard(rt, "s").pending_docs == 0


def test_a_doc_id_in_two_shards_is_named_and_does_not_ping_pong(tmp_path, make_runtime):
    rows = [{"doc_id": "x", "shard": "s1", "content": "Same words."},
            {"doc_id": "x", "shard": "s2", "content": "Same words."},
            {"doc_id": "y", "shard": "s1", "content": "Other words."}]
    rt = make_runtime(source=table(tmp_path, rows), index=ClientIndex(url=":memory:"))
    sync(rt)
    again = sync(rt)
    assert again.totals["chunks_embedded"] == 0
    assert any("duplicate doc_id" in s.reason for r in again.shards for s in r.skips)


def test_future_file_times_are_clamped_to_the_scan(corpus, make_runtime):
    future = (utc_now() + timedelta(days=400)).timestamp()
    os.utime(corpus / "alpha" / "apples.md", (future, future))
    rt = make_runtime(corpus)
    result = sync(rt)
    alpha = next(r for r in result.shards if r.shard == "alpha")
    assert alpha.notes["future_timestamp_clamped"] == 1
    info = manifest_infos(rt)["alpha"]
    assert datetime.fromisoformat(info["last_source_change_seen"]) <= utc_now()
    manifest = rt.shard_state().load("alpha")
    assert max(manifest.chunks["source_updated_at"].to_pylist()) <= utc_now()


def test_naive_and_future_table_times_in_a_sync(tmp_path, make_runtime):
    rows = [{"doc_id": "n", "shard": "s", "content": "Naive time.",
             "updated_at": datetime(2025, 5, 1, 12, 0)},
            {"doc_id": "f", "shard": "s", "content": "Future time.",
             "updated_at": datetime.now(timezone.utc) + timedelta(days=9)}]
    rt = make_runtime(source=table(tmp_path, rows))
    assert sync(rt).ok
    times = dict(zip(*rt.shard_state().load("s").chunks.select(
        ["doc_id", "source_updated_at"]).to_pydict().values()))
    assert times["n"] == datetime(2025, 5, 1, 12, 0, tzinfo=timezone.utc)
    assert times["f"] <= utc_now()


# -- hostile shard names --------------------------------------------------------------------

HOSTILE = ["../x", "../../../../escaped", "", ".", "..", "a\x00b", "x" * 300, "ok/../../up",
           "a//b", "/abs", "trail/", "tab\tname"]
# Nested and unusual names are shards like any other: each maps to one folder under the root.
ODD_BUT_SAFE = ["a/b", "a\\b", "データ", "-lead", " spaced", "x" * 150, "tenants/acme/kb", "50%"]


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_hostile_shard_names_never_reach_a_path(tmp_path, corpus, make_runtime):
    rt = make_runtime(corpus)
    assert sync(rt).ok
    before = files_under(tmp_path)
    result = sync(rt, HOSTILE)
    assert not result.ok and all("is not allowed" in s.error for s in result.shards)
    after = files_under(tmp_path)
    assert {p for p in after - before if not p.startswith("state/runs/")} == set()
    assert not list(tmp_path.parent.rglob("escaped")) and not (tmp_path / "x").exists()

    store, index = StateStore(tmp_path / "state"), EdgeIndex(tmp_path / "qdrant")
    state = ShardStateStore(store, rt.collection)
    root = (tmp_path / "state").resolve()
    for name in HOSTILE:
        with pytest.raises(StateError, match="unsafe shard name"):
            index.shard_point_ids(rt.collection, name)
        with pytest.raises(StateError, match="unsafe shard name"):
            with index.open_shard(rt.collection, name):
                pass
        with pytest.raises(StateError, match="not allowed"):
            repair_shard(rt, name)
        try:  # the state store refuses traversal; any other name stays under the root
            path = Path(store.path("collections", rt.collection, "shards", name))
        except StateError:
            continue
        assert path.resolve().is_relative_to(root), name
        try:
            state.write_pending(name, {"probe": True})
        except OSError:  # e.g. a name too long for the filesystem: refused by the OS
            continue
        assert state.read_pending(name) == {"probe": True}
    assert not list(tmp_path.parent.rglob("escaped"))
    for segment in ("..", "../x", "a/b", "", "a\x00b"):
        with pytest.raises(StateError, match="unsafe state path segment"):
            store.write_bytes(b"x", "collections", segment, "f")


def test_hostile_shard_folders_in_a_folder_source_are_named_and_skipped(corpus):
    for name in ("データ", "x" * 150, "-lead", "ctl\x1bname"):
        (corpus / name).mkdir()
        (corpus / name / "doc.md").write_text("hello")
    discovery = FolderSource(corpus).discover()
    assert discovery.shards == sorted(["alpha", "beta", "データ", "x" * 150, "-lead"])
    assert len(discovery.skips) == 1 and "not allowed" in discovery.skips[0].reason


def test_odd_but_safe_shard_names_map_to_one_folder_under_the_root(tmp_path):
    store = StateStore(tmp_path / "state")
    state = ShardStateStore(store, "c")
    root = (tmp_path / "state").resolve()
    for name in ODD_BUT_SAFE:
        path = Path(store.path("collections", "c", "shards", shard_segment(name)))
        assert path.parent.resolve() == root / "collections" / "c" / "shards", name
        state.write_pending(name, {"probe": name})
        assert state.read_pending(name) == {"probe": name}
        assert shard_from_segment(shard_segment(name)) == name
    assert sorted(state.shard_folders()) == sorted(ODD_BUT_SAFE)


# -- corrupt state, and `freshness repair` --------------------------------------------------

def _corrupt(rt, how: str) -> Path:
    folder = Path(rt.store.path("collections", rt.collection, "shards", "alpha"))
    info = json.loads((folder / "manifest.json").read_text())
    if how == "garbage_manifest":
        (folder / "manifest.json").write_bytes(b"\x00{not json")
        return folder / "manifest.json"
    if how == "truncated_chunks":
        chunks = folder / info["chunks_file"]
        chunks.write_bytes(chunks.read_bytes()[: chunks.stat().st_size // 2])
        return chunks
    if how == "missing_chunks":
        (folder / info["chunks_file"]).unlink()
        return folder / info["chunks_file"]
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["garbage_manifest", "truncated_chunks", "missing_chunks"])
def test_corrupt_state_is_named_and_repaired_from_the_index(how, corpus, make_runtime,
                                                           capsys):
    rt = make_runtime(corpus)
    assert sync(rt).ok
    healthy = manifest_infos(rt)
    bad_file = _corrupt(rt, how)

    result = sync(rt)
    failed = {s.shard: s.error for s in result.shards if not s.ok}
    assert list(failed) == ["alpha"] and "freshness repair" in failed["alpha"]
    assert bad_file.name in failed["alpha"]
    assert broken_shards(rt) == ["alpha"]

    args = _repair_parser().parse_args(
        ["repair", "--path", str(corpus), "--state-root", rt.settings.state_root,
         "--index-path", rt.settings.index_path, "--device", "cpu"])
    assert cli_repair.run(args, None) == 0  # as `freshness repair` runs it
    printed = json.loads(capsys.readouterr().out)
    report = printed["repaired"]
    assert [(r["shard"], r["chunks"]) for r in report] == [("alpha", 2)]
    assert report[0]["version"] == healthy["alpha"]["version"] + 1
    assert broken_shards(rt) == []
    # repair's own sync re-reads each doc once to restore the doc hashes, embedding nothing
    assert printed["sync"]["totals"]["docs_modified"] == 2
    assert printed["sync"]["totals"]["chunks_embedded"] == 0

    after = sync(rt)
    assert after.ok and after.totals["chunks_embedded"] == 0  # points found, not re-embedded
    assert after.totals["docs_modified"] == 0
    assert_converged(rt)
    assert_timestamps_monotonic(healthy, manifest_infos(rt))


def _repair_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="freshness")
    cli_repair.add_parser(parser.add_subparsers(dest="command"))
    return parser


def test_repair_keeps_points_without_lineage_out_and_sync_deletes_them(corpus, make_runtime):
    rt = make_runtime(corpus)
    assert sync(rt).ok
    junk = "00000000-0000-0000-0000-0000000000aa"
    with rt.index.open_shard(rt.collection, "alpha") as session:
        session.upsert([PointRecord(junk, rt.embedder.encode(["junk"])[0], {"doc_id": "j"})])
    (corpus / "alpha" / "pears.md").unlink()  # and the source moved on meanwhile
    report = repair_shard(rt, "alpha")
    assert (report["points"], report["chunks"], report["points_without_lineage"]) == (3, 2, 1)
    result = sync(rt)
    assert result.totals["chunks_embedded"] == 0 and result.totals["docs_deleted"] == 1
    assert result.totals["orphans_deleted"] == 1
    assert_converged(rt)


def test_a_manifest_missing_its_keys_is_named_not_a_crash(corpus, make_runtime):
    rt = make_runtime(corpus)
    assert sync(rt).ok
    folder = Path(rt.store.path("collections", rt.collection, "shards", "alpha"))
    (folder / "manifest.json").write_text("{}")
    result = sync(rt)
    assert [s.shard for s in result.shards if not s.ok] == ["alpha"]


def test_repair_fixes_a_manifest_missing_its_keys_and_a_chunks_file_of_another_schema(
        corpus, make_runtime):
    rt = make_runtime(corpus)
    assert sync(rt).ok
    alpha = Path(rt.store.path("collections", rt.collection, "shards", "alpha"))
    (alpha / "manifest.json").write_text("{}")
    beta = Path(rt.store.path("collections", rt.collection, "shards", "beta"))
    chunks_file = json.loads((beta / "manifest.json").read_text())["chunks_file"]
    pq.write_table(pa.table({"x": [1]}), beta / chunks_file)
    assert broken_shards(rt) == ["alpha", "beta"]
    assert [repair_shard(rt, s)["chunks"] for s in ("alpha", "beta")] == [2, 2]
    assert sync(rt).totals["chunks_embedded"] == 0
    assert_converged(rt)
    assert rt.shard_state().load("alpha").chunks.schema == MANIFEST_SCHEMA


# -- a source that disappears --------------------------------------------------------------

def test_a_table_source_file_removed_fails_clearly_and_touches_nothing(tmp_path,
                                                                     make_runtime):
    path = tmp_path / "docs.parquet"
    rows = [{"doc_id": "a", "shard": "s1", "content": "Owls hunt at night."},
            {"doc_id": "b", "shard": "s2", "content": "Foxes dig dens."}]
    source = table(tmp_path, rows)
    rt = make_runtime(source=source)
    assert sync(rt).ok
    state, points = manifest_infos(rt), rt.index.shard_point_ids(rt.collection, "s1")

    path.rename(tmp_path / "moved.parquet")  # gone before the run
    with pytest.raises(SourceError, match=re.escape(str(path))):
        sync(rt)
    (tmp_path / "moved.parquet").rename(path)

    discover = source.discover

    def discover_then_vanish():  # gone mid-scan: after discovery, before the listings
        found = discover()
        path.rename(tmp_path / "moved.parquet")
        return found

    source.discover = discover_then_vanish
    result = sync(rt)
    assert not result.ok and all("cannot read table source" in s.error for s in result.shards)
    assert result.totals["docs_deleted"] == 0
    assert manifest_infos(rt) == state
    assert rt.index.shard_point_ids(rt.collection, "s1") == points
    source.discover = discover
    (tmp_path / "moved.parquet").rename(path)
    assert sync(rt).totals["chunks_embedded"] == 0
    assert_converged(rt)
