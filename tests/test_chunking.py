"""Chunking and hashing: limits respected, nothing truncated, edits stay local."""

import pyarrow as pa
import pytest

from freshness.embed.chunking import Chunker
from freshness.embed.models import resolve_model
from freshness.errors import ConfigError
from freshness.util.hashing import chunk_hash, point_id


@pytest.fixture(scope="module")
def chunker() -> Chunker:
    spec = resolve_model()
    return Chunker.for_model(spec.location, spec.max_seq_length, chunk_tokens=64,
                             overlap_tokens=8)


def long_doc(paragraphs: int = 8, words: int = 30) -> str:
    return "\n\n".join(f"Section {i}. " + " ".join(f"term{i}x{j}" for j in range(words))
                       for i in range(paragraphs))


def test_chunks_respect_the_token_limit_and_cover_every_character(chunker):
    text = long_doc()
    spans = chunker.spans(text)
    assert all(s.n_tokens <= 64 for s in spans)
    covered = set()
    for span in spans:
        covered.update(range(span.start, span.end))
    visible = {i for i, c in enumerate(text) if not c.isspace()}
    assert visible <= covered


def test_a_paragraph_longer_than_the_limit_is_windowed_with_overlap(chunker):
    text = " ".join(f"word{i}" for i in range(400))
    spans = chunker.spans(text)
    assert len(spans) > 2
    for left, right in zip(spans, spans[1:]):
        assert right.start < left.end  # windows overlap
    assert spans[-1].end == len(text)


def test_editing_one_paragraph_changes_exactly_one_chunk(chunker):
    text = long_doc()
    edited = text.replace("term3x5", "TERM3X5")
    before = chunker.chunk_docs(pa.table({"doc_id": ["d"], "content": [text]}))
    after = chunker.chunk_docs(pa.table({"doc_id": ["d"], "content": [edited]}))
    assert before.num_rows == after.num_rows > 3
    changed = set(after["content_hash"].to_pylist()) - set(before["content_hash"].to_pylist())
    assert len(changed) == 1


def test_model_limit_is_enforced_and_saved_tokenizer_padding_is_disabled():
    spec = resolve_model()
    with pytest.raises(ConfigError, match="exceeds the model's limit"):
        Chunker.for_model(spec.location, spec.max_seq_length, chunk_tokens=400)
    default = Chunker.for_model(spec.location, spec.max_seq_length)
    assert default.max_tokens == 254
    text = " ".join(f"w{i}" for i in range(2000))
    spans = default.spans(text)
    assert sum(s.n_tokens for s in spans) > 2000  # nothing truncated at 128/256 tokens


def test_point_ids_are_deterministic_and_content_addressed():
    h = chunk_hash("hello")
    assert point_id("doc", h) == point_id("doc", h)
    assert point_id("doc", h) != point_id("doc", h, 1)
    assert point_id("doc", h) != point_id("other", h)


def test_duplicate_chunks_in_one_doc_get_distinct_points(chunker):
    text = "Same paragraph.\n\n" + "x " * 70 + "\n\nSame paragraph."
    chunks = chunker.chunk_docs(pa.table({"doc_id": ["d"], "content": [text]}))
    assert len(set(chunks["point_id"].to_pylist())) == chunks.num_rows
