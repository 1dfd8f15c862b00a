"""Sources: folder, table and replay, with bad input named and skipped, never crashing."""

import os
import time
from datetime import datetime, timedelta, timezone

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from freshness.errors import SourceError
from freshness.sources import FolderSource, ReplaySource, TableSource
from freshness.util.hashing import doc_hash
from tests.conftest import SHARED_DATA


def test_folder_source_shards_by_first_folder(corpus):
    source = FolderSource(corpus)
    assert source.discover().shards == ["alpha", "beta"]
    listing = source.listing("alpha")
    assert sorted(listing.docs["doc_id"].to_pylist()) == ["alpha/apples.md", "alpha/pears.md"]
    assert listing.complete and not listing.skips
    docs = source.read("alpha", ["alpha/pears.md"])
    assert docs["content"].to_pylist() == ["# Pears\n\nPears are sweet and grainy."]


def test_folder_source_skips_bad_files_with_reasons(corpus):
    (corpus / "alpha" / "latin1.md").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (corpus / "alpha" / "binary.md").write_bytes(b"\x00\x01\x02")
    (corpus / "alpha" / "empty.md").write_text("  \n")
    (corpus / "alpha" / "huge.md").write_text("x" * 2000)
    source = FolderSource(corpus, max_doc_bytes=1000)
    reasons = {s.doc_id: s.reason for s in source.listing("alpha").skips}
    assert "not UTF-8" in reasons["alpha/latin1.md"]
    assert "binary" in reasons["alpha/binary.md"]
    assert "empty" in reasons["alpha/empty.md"]
    assert "FRESHNESS_MAX_DOC_BYTES" in reasons["alpha/huge.md"]


def test_folder_source_accepts_odd_names_and_refuses_unsafe_ones(corpus):
    for name in ("with space", "données", "bad\x01name"):
        (corpus / name).mkdir()
        (corpus / name / "doc.md").write_text("hello")
    discovery = FolderSource(corpus).discover()
    assert {"with space", "données"} <= set(discovery.shards)
    assert "bad\x01name" not in discovery.shards
    assert "control character" in discovery.skips[0].reason


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(SourceError, match="FRESHNESS_SOURCE_PATH"):
        FolderSource(tmp_path / "nope").discover()


def test_vanished_shard_folder_gives_an_incomplete_listing(corpus):
    source = FolderSource(corpus)
    source.discover()
    for path in (corpus / "beta").iterdir():
        path.unlink()
    (corpus / "beta").rmdir()
    listing = source.listing("beta")
    assert not listing.complete and listing.docs.num_rows == 0


def table_source(tmp_path, rows) -> TableSource:
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return TableSource.from_parquet(path)


def test_table_source_skips_duplicates_and_unsafe_shards(tmp_path):
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rows = [
        {"doc_id": "a", "shard": "s1", "content": "alpha", "updated_at": now, "lang": "en"},
        {"doc_id": "dup", "shard": "s1", "content": "one", "updated_at": now, "lang": "en"},
        {"doc_id": "dup", "shard": "s1", "content": "two", "updated_at": now, "lang": "en"},
        {"doc_id": "b", "shard": "../x", "content": "evil", "updated_at": now, "lang": "en"},
        {"doc_id": "c", "shard": "tab\there", "content": "x", "updated_at": now, "lang": "en"},
        {"doc_id": "e", "shard": "s1", "content": "", "updated_at": now, "lang": "en"},
    ]
    source = table_source(tmp_path, rows)
    discovery = source.discover()
    assert discovery.shards == ["s1"]
    assert len(discovery.skips) == 2 and all("not allowed" in s.reason for s in discovery.skips)
    listing = source.listing("s1")
    assert listing.docs["doc_id"].to_pylist() == ["a"]
    reasons = {s.doc_id: s.reason for s in listing.skips}
    assert "duplicate doc_id (2 rows)" in reasons["dup"] and "empty" in reasons["e"]
    docs = source.read("s1", ["a", "dup"])
    assert docs["doc_id"].to_pylist() == ["a"]
    assert docs["metadata"].to_pylist() == ['{"lang":"en"}']


def test_table_source_clamps_future_and_naive_timestamps(tmp_path):
    future = datetime.now(timezone.utc) + timedelta(days=30)
    rows = [{"doc_id": "f", "shard": "s", "content": "x", "updated_at": future},
            {"doc_id": "n", "shard": "s", "content": "y",
             "updated_at": datetime(2025, 5, 1, 12, 0)}]
    listing = table_source(tmp_path, rows).listing("s")
    times = dict(zip(listing.docs["doc_id"].to_pylist(), listing.docs["updated_at"].to_pylist()))
    assert times["f"] <= datetime.now(timezone.utc)
    assert listing.notes["future_timestamp_clamped"] == 1
    assert times["n"] == datetime(2025, 5, 1, 12, 0, tzinfo=timezone.utc)


def test_table_source_names_missing_columns(tmp_path):
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"id": ["a"], "text": ["b"]}), path)
    with pytest.raises(SourceError, match="lacks column"):
        TableSource.from_parquet(path)


def test_duckdb_table_source(tmp_path):
    db = tmp_path / "docs.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE docs AS SELECT 'a' doc_id, 'main' shard, 'text' content, "
                "TIMESTAMPTZ '2026-01-01 00:00:00+00' updated_at")
    con.close()
    source = TableSource.from_duckdb(db, "docs")
    assert source.listing("main").docs.num_rows == 1


def write_log(tmp_path):
    t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    snapshot = [
        {"commit_seq": 0, "committed_at": t0, "path": "p/a.md", "shard": "p", "op": "add",
         "content": "A0"},
        {"commit_seq": 0, "committed_at": t0, "path": "p/b.md", "shard": "p", "op": "add",
         "content": "B0"},
    ]
    replay = [
        {"commit_seq": 1, "committed_at": t0 + timedelta(days=1), "path": "p/a.md", "shard": "p",
         "op": "modify", "content": "A1"},
        {"commit_seq": 2, "committed_at": t0 + timedelta(days=2), "path": "p/b.md", "shard": "p",
         "op": "delete", "content": None},
        {"commit_seq": 3, "committed_at": t0 + timedelta(days=3), "path": "q/c.md", "shard": "q",
         "op": "add", "content": "C3"},
    ]
    schema = pa.schema([("commit_seq", pa.int32()), ("committed_at", pa.timestamp("us", "UTC")),
                        ("path", pa.string()), ("shard", pa.string()), ("op", pa.string()),
                        ("content", pa.string())])
    pq.write_table(pa.Table.from_pylist(snapshot, schema), tmp_path / "snapshot.parquet")
    pq.write_table(pa.Table.from_pylist(replay, schema), tmp_path / "replay.parquet")
    return tmp_path / "snapshot.parquet", tmp_path / "replay.parquet"


def test_replay_source_as_of_commit_and_time(tmp_path):
    source = ReplaySource(*write_log(tmp_path), as_of_seq=0)
    assert source.discover().shards == ["p"]
    assert source.read("p", ["p/a.md"])["content"].to_pylist() == ["A0"]
    source.seek(2)
    assert source.listing("p").docs["doc_id"].to_pylist() == ["p/a.md"]
    assert source.read("p", ["p/a.md"])["content"].to_pylist() == ["A1"]
    assert source.seek(at="2024-01-04T00:00:00Z") == 3
    assert source.discover().shards == ["p", "q"]
    assert source.touched_paths(0, 2) == ["p/a.md", "p/b.md"]


@pytest.mark.skipif(not SHARED_DATA.exists(), reason="tldr replay data not present")
def test_replay_source_on_tldr_matches_published_counts():
    source = ReplaySource(SHARED_DATA / "snapshot.parquet", SHARED_DATA / "replay.parquet",
                          as_of_seq=0)
    total = sum(source.listing(s).docs.num_rows for s in source.discover().shards)
    assert total == 4032
    source.seek()
    total = sum(source.listing(s).docs.num_rows for s in source.discover().shards)
    assert total == 7425


def test_a_table_source_over_a_live_relation_sees_changes_at_each_scan():
    con = duckdb.connect()
    con.register("corpus", pa.table({"doc_id": ["a"], "shard": ["s"], "content": ["one"]}))
    source = TableSource("SELECT * FROM corpus", "live", con=con)
    first = source.listing("s").docs["doc_hash"].to_pylist()
    con.register("corpus", pa.table({"doc_id": ["a"], "shard": ["s"], "content": ["two"]}))
    source.refresh()  # sync, detect and the sensor call it at the start of every scan
    assert source.listing("s").docs["doc_hash"].to_pylist() != first


def test_folder_listing_rehashes_only_moved_files_and_racy_ones(corpus):
    source = FolderSource(corpus)
    path = corpus / "alpha" / "pears.md"
    first = source.listing("alpha")
    assert first.notes["docs_hashed"] == 2  # cold
    # Rewrite in place with the same size and restore the mtime: the (size, mtime, inode)
    # token cannot see it. The file was hashed within the racy window of its mtime, so the
    # next listing hashes it again and sees the new content.
    stat = path.stat()
    path.write_text("# Pears\n\nPears are tangy and grainy.")
    assert path.stat().st_size == stat.st_size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = source.listing("alpha")
    hashes = dict(zip(second.docs["doc_id"].to_pylist(), second.docs["doc_hash"].to_pylist()))
    assert hashes["alpha/pears.md"] == doc_hash(path.read_text())
    old = time.time() - 3600  # files past the window are trusted: nothing is read
    for p in (corpus / "alpha").iterdir():
        os.utime(p, (old, old))
    source.listing("alpha")  # re-hash once (the mtime moved), now outside the window
    assert source.listing("alpha").notes["docs_hashed"] == 0


def test_folder_include_and_exclude_globs(corpus):
    (corpus / "alpha" / "notes.rst").write_text("Notes in reStructuredText.")
    (corpus / "alpha" / "drafts").mkdir()
    (corpus / "alpha" / "drafts" / "wip.md").write_text("Not ready.")
    (corpus / "alpha" / "data.bin").write_bytes(b"\x00\x01")
    source = FolderSource(corpus, patterns=("*.md", "*.bin"), exclude=("*/drafts/*",))
    ids = source.listing("alpha").docs["doc_id"].to_pylist()
    assert sorted(ids) == ["alpha/apples.md", "alpha/pears.md"]
    reasons = {s.doc_id: s.reason for s in source.listing("alpha").skips}
    assert "FRESHNESS_SOURCE_EXCLUDE" in reasons["alpha/data.bin"]  # the hint names a setting


def test_folder_source_over_any_pyarrow_filesystem_without_mtimes():
    import fsspec
    import pyarrow.fs as pafs

    memory = fsspec.filesystem("memory")
    memory.pipe("/corpus-t/a/x.md", b"hello there")
    memory.pipe("/corpus-t/b/y.md", b"second doc")
    source = FolderSource("/corpus-t", filesystem=pafs.PyFileSystem(pafs.FSSpecHandler(memory)))
    try:
        assert source.discover().shards == ["a", "b"]
        assert source.read("a", ["a/x.md"])["content"].to_pylist() == ["hello there"]
        source.listing("a")
        memory.pipe("/corpus-t/a/x.md", b"hello THERE")  # same size, and no mtime at all
        listing = source.listing("a")
        assert listing.docs["doc_hash"].to_pylist() == [doc_hash("hello THERE")]
        assert listing.notes["docs_hashed"] == 1  # no mtime: never trusted, always re-hashed
    finally:
        memory.rm("/corpus-t", recursive=True)
