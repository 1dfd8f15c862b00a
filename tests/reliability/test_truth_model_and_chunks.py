"""Issue 13, class 9: CRLF documents chunk like LF ones (an edit re-embeds one chunk, not all),
and a model's revision follows its weights' bytes, not their size."""

from __future__ import annotations

import json
import os
from pathlib import Path

from freshness.embed.chunking import Chunker, load_tokenizer
from freshness.embed.models import resolve_model

PARAGRAPHS = [f"Paragraph {n} talks about topic number {n} in a few plain words." for n in
              range(6)]


def _chunker() -> Chunker:
    return Chunker(load_tokenizer(resolve_model().location), max_tokens=20, overlap_tokens=0)


def _hashes(chunker: Chunker, text: str) -> list[str]:
    import pyarrow as pa

    docs = pa.table({"doc_id": ["d.md"], "content": [text]})
    return chunker.chunk_docs(docs)["content_hash"].to_pylist()


def test_crlf_document_keeps_paragraph_aligned_chunks():
    chunker = _chunker()
    lf = "\n\n".join(PARAGRAPHS)
    crlf = lf.replace("\n", "\r\n")
    assert len(_hashes(chunker, crlf)) == len(_hashes(chunker, lf)) == len(PARAGRAPHS)
    edited = PARAGRAPHS.copy()
    edited[2] += " One inserted sentence."
    before = _hashes(chunker, crlf)
    after = _hashes(chunker, "\r\n\r\n".join(edited))
    assert len(set(after) - set(before)) == 1  # only the edited paragraph's chunk is new


def test_weights_rewritten_in_place_at_the_same_size_change_the_revision(tmp_path: Path):
    folder = tmp_path / "my-finetune"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    weights = folder / "model.safetensors"
    weights.write_bytes(os.urandom(4096))
    first = resolve_model(str(folder)).revision
    stat = weights.stat()
    weights.write_bytes(os.urandom(4096))  # fine-tuned: same size, new values
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with the old mtime
    assert weights.stat().st_size == stat.st_size
    assert resolve_model(str(folder)).revision != first
    assert resolve_model(str(folder)).revision == resolve_model(str(folder)).revision
