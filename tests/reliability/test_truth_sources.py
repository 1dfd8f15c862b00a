"""Issue 13, classes 1, 2 and 9 at the folder source: containment, file types, bad names,
vanished files, the root/`default` shard collision, BOM and zero-width-only text.

Each test builds the hostile case for real (symlinks, a FIFO, a non-UTF-8 name) in tmp_path.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from reliability_helpers import no_hang  # noqa: F401 (autouse: a FIFO fails, never hangs)

from freshness.sources import FolderSource
from freshness.sources.files import ROOT_SHARD
from tests.corpus_data import write_tiny_corpus

SECRET = "TOP SECRET: the launch code is 0000."


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_tiny_corpus(tmp_path / "corpus")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    (folder / "tree").mkdir(parents=True)
    (folder / "secret.md").write_text(SECRET)
    (folder / "tree" / "more.md").write_text(SECRET)
    return folder


def _everything(source: FolderSource) -> tuple[list[str], dict[str, str], list[str]]:
    """(doc ids listed, skip reasons by id, contents read) over every discovered shard."""
    discovery = source.discover()
    ids, reasons, texts = [], {s.doc_id: s.reason for s in discovery.skips}, []
    for shard in discovery.shards:
        listing = source.listing(shard)
        ids += listing.docs["doc_id"].to_pylist()
        reasons.update({s.doc_id: s.reason for s in listing.skips})
        texts += source.read(shard, listing.docs["doc_id"].to_pylist())["content"].to_pylist()
    return ids, reasons, texts


def test_symlinked_doc_outside_the_root_is_never_read(corpus, outside):
    (corpus / "alpha" / "leak.md").symlink_to(outside / "secret.md")
    (corpus / "alpha" / "passwd.md").symlink_to("/etc/passwd")
    (corpus / "alpha" / "proc.md").symlink_to("/proc/self/environ")
    (corpus / "alpha" / "up.md").symlink_to("../../outside/secret.md")
    source = FolderSource(corpus)
    ids, reasons, texts = _everything(source)
    for name in ("leak", "passwd", "proc", "up"):
        assert f"alpha/{name}.md" not in ids
        assert "outside the source root" in reasons[f"alpha/{name}.md"]
    assert all(SECRET not in t and "root:" not in t for t in texts)
    # asking for the id directly (a stale plan) reads nothing either
    assert source.read("alpha", ["alpha/leak.md", "alpha/passwd.md"]).num_rows == 0


def test_symlinked_shard_folder_is_not_followed(corpus, outside):
    (corpus / "linked").symlink_to(outside / "tree", target_is_directory=True)
    (corpus / "alpha" / "sub").symlink_to(outside / "tree", target_is_directory=True)
    ids, reasons, texts = _everything(FolderSource(corpus))
    assert "linked" not in FolderSource(corpus).discover().shards
    assert "symlink" in reasons["linked/"]
    assert not any(i.startswith(("linked/", "alpha/sub/")) for i in ids)
    assert all(SECRET not in t for t in texts)


def test_symlink_inside_the_root_is_followed(corpus):
    (corpus / "alpha" / "alias.md").symlink_to(corpus / "beta" / "boats.md")
    ids, _, texts = _everything(FolderSource(corpus))
    assert "alpha/alias.md" in ids
    assert texts.count("# Boats\n\nBoats float on water and carry cargo.") == 2


def test_fifo_socket_and_device_are_reported_never_opened(corpus, tmp_path):
    os.mkfifo(corpus / "alpha" / "pipe.md")  # opening it for reading would block forever
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(corpus / "alpha" / "sock.md"))
    (corpus / "alpha" / "null.md").symlink_to("/dev/null")
    try:
        ids, reasons, _ = _everything(FolderSource(corpus))
    finally:
        sock.close()
    assert "not a regular file" in reasons["alpha/pipe.md"]
    assert "not a regular file" in reasons["alpha/sock.md"]
    assert "alpha/null.md" in reasons  # outside the root and a device
    assert sorted(ids) == sorted(["alpha/apples.md", "alpha/pears.md", "beta/boats.md",
                                  "beta/bikes.txt"])


def test_non_utf8_file_name_is_a_counted_skip(corpus):
    bad = os.fsencode(corpus / "alpha") + b"/caf\xe9.md"
    with open(bad, "wb") as out:
        out.write(b"a latin-1 name")
    source = FolderSource(corpus)
    ids, reasons, _ = _everything(source)
    assert "alpha/caf\\xe9.md" in reasons
    assert "not valid UTF-8" in reasons["alpha/caf\\xe9.md"]
    assert "alpha/apples.md" in ids
    assert source.change_tokens()["alpha"]  # stat-only tokens survive it too


def test_file_deleted_between_listing_and_reading(corpus):
    source = FolderSource(corpus)
    listing = source.listing("alpha")
    (corpus / "alpha" / "pears.md").unlink()
    docs = source.read("alpha", listing.docs["doc_id"].to_pylist())
    assert docs["doc_id"].to_pylist() == ["alpha/apples.md"]
    # and one vanishing while the listing stats it
    # and one swapped for a FIFO after the listing: never opened (no hang), left out
    (corpus / "alpha" / "apples.md").unlink()
    os.mkfifo(corpus / "alpha" / "apples.md")
    assert source.read("alpha", ["alpha/apples.md"]).num_rows == 0


def test_root_files_and_a_default_folder_are_one_shard(corpus):
    (corpus / "top.md").write_text("A file directly in the root.")
    (corpus / "default").mkdir()
    (corpus / "default" / "inner.md").write_text("A file in a folder named default.")
    source = FolderSource(corpus)
    shards = source.discover().shards
    assert shards.count(ROOT_SHARD) == 1
    ids = source.listing(ROOT_SHARD).docs["doc_id"].to_pylist()
    assert sorted(ids) == ["default/inner.md", "top.md"]
    assert list(source.change_tokens()) .count(ROOT_SHARD) == 1


@pytest.mark.parametrize("content", ["\ufeff", "\ufeff\n\n", "\u200b\u200b", " \u200d\u2060 \n"])
def test_bom_or_zero_width_only_text_is_empty(corpus, content):
    (corpus / "alpha" / "ghost.md").write_text(content, encoding="utf-8")
    reasons = {s.doc_id: s.reason for s in FolderSource(corpus).listing("alpha").skips}
    assert "empty" in reasons["alpha/ghost.md"]


def test_bom_is_not_part_of_the_content(corpus):
    (corpus / "alpha" / "bom.md").write_bytes("\ufeff# Bom\n\nText.".encode())
    docs = FolderSource(corpus).read("alpha", ["alpha/bom.md"])
    assert docs["content"].to_pylist() == ["# Bom\n\nText."]


def test_zero_width_only_table_content_is_empty(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from freshness.sources import TableSource

    rows = [{"doc_id": "a", "shard": "s1", "content": "\u200b\ufeff \u2060"},
            {"doc_id": "b", "shard": "s1", "content": "real text"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "docs.parquet")
    listing = TableSource.from_parquet(tmp_path / "docs.parquet").listing("s1")
    assert listing.docs["doc_id"].to_pylist() == ["b"]
    assert "empty" in {s.doc_id: s.reason for s in listing.skips}["a"]
