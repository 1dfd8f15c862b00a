"""Token-aware chunking: paragraphs packed up to the model's limit, long ones windowed.

Chunks follow paragraph boundaries (blank lines, LF or CRLF), so an edit inside one paragraph
changes one chunk and leaves the others' hashes, and so their embeddings, untouched. A paragraph
longer than the limit is split into token windows with `overlap_tokens` of overlap. Every
character of the document lands in at least one chunk: nothing is truncated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pyarrow as pa

from freshness.errors import ConfigError
from freshness.util.hashing import chunk_hash, point_id
from freshness.util.text import is_blank

PARAGRAPH_BREAK = re.compile(r"\r?\n[ \t]*\r?\n")  # LF or CRLF line ends
CHUNKS_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("chunk_index", pa.int32()),
        ("text", pa.string()),
        ("content_hash", pa.string()),
        ("point_id", pa.string()),
        ("n_tokens", pa.int32()),
    ]
)


@lru_cache(maxsize=4)
def load_tokenizer(location: str):
    """The fast tokenizer of a model folder or hub name (no torch needed)."""
    from tokenizers import Tokenizer

    path = Path(location) / "tokenizer.json"
    try:
        if path.exists():
            tokenizer = Tokenizer.from_file(str(path))
        else:
            tokenizer = Tokenizer.from_pretrained(location)
    except Exception as exc:  # noqa: BLE001 - the hub raises many kinds
        raise ConfigError(
            f"cannot load the tokenizer of model {location!r}: {exc}. Use a local model "
            "folder with tokenizer.json, or a reachable hub name"
        ) from exc
    # Count every token: the saved tokenizer may pad or truncate, which would hide text.
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    n_tokens: int


class Chunker:
    """Split documents into chunks of at most `max_tokens` model tokens."""

    def __init__(self, tokenizer, max_tokens: int, overlap_tokens: int = 32) -> None:
        if max_tokens < 8:
            raise ConfigError(f"chunk_tokens={max_tokens} is too small: use at least 8")
        if not 0 <= overlap_tokens < max_tokens // 2:
            raise ConfigError(
                f"overlap_tokens={overlap_tokens} must be >= 0 and < chunk_tokens/2 "
                f"({max_tokens // 2})"
            )
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens

    @classmethod
    def for_model(cls, location: str, max_seq_length: int, chunk_tokens: int | None = None,
                  overlap_tokens: int = 32) -> Chunker:
        """A chunker that respects the model's max sequence length (minus [CLS]/[SEP])."""
        limit = max_seq_length - 2
        if chunk_tokens is not None and chunk_tokens > limit:
            raise ConfigError(
                f"chunk_tokens={chunk_tokens} exceeds the model's limit of {limit} tokens: "
                "the model would truncate the rest; lower FRESHNESS_CHUNK_TOKENS"
            )
        return cls(load_tokenizer(location), chunk_tokens or limit, overlap_tokens)

    def _paragraphs(self, text: str) -> list[tuple[int, int]]:
        spans, start = [], 0
        for match in PARAGRAPH_BREAK.finditer(text):
            spans.append((start, match.start()))
            start = match.end()
        spans.append((start, len(text)))
        return [(s, e) for s, e in spans if not is_blank(text[s:e])]

    def _windows(self, text: str, start: int, end: int) -> list[Span]:
        enc = self.tokenizer.encode(text[start:end], add_special_tokens=False)
        offsets, n = enc.offsets, len(enc.offsets)
        step = self.max_tokens - self.overlap_tokens
        spans, first = [], 0
        while True:
            last = min(first + self.max_tokens, n)
            char_start, char_end = offsets[first][0], offsets[last - 1][1]
            spans.append(Span(start + char_start, start + char_end, last - first))
            if last >= n:
                return spans
            first += step

    def spans(self, text: str) -> list[Span]:
        """Character spans of the chunks of `text`."""
        paragraphs = self._paragraphs(text)
        if not paragraphs:
            return []
        counts = [
            len(e.ids)
            for e in self.tokenizer.encode_batch(
                [text[s:e] for s, e in paragraphs], add_special_tokens=False
            )
        ]
        spans: list[Span] = []
        current: Span | None = None
        for (start, end), n in zip(paragraphs, counts):
            if n > self.max_tokens:
                if current:
                    spans.append(current)
                    current = None
                spans.extend(self._windows(text, start, end))
            elif current and current.n_tokens + n <= self.max_tokens:
                current = Span(current.start, end, current.n_tokens + n)
            else:
                if current:
                    spans.append(current)
                current = Span(start, end, n)
        if current:
            spans.append(current)
        return self._enforce_limit(text, spans)

    def _enforce_limit(self, text: str, spans: list[Span]) -> list[Span]:
        """Re-split any packed span whose joined text tokenizes over the limit."""
        encoded = self.tokenizer.encode_batch(
            [text[s.start:s.end] for s in spans], add_special_tokens=False
        )
        result: list[Span] = []
        for span, enc in zip(spans, encoded):
            if len(enc.ids) <= self.max_tokens:
                result.append(Span(span.start, span.end, len(enc.ids)))
            else:
                result.extend(self._windows(text, span.start, span.end))
        return result

    def chunk_docs(self, docs: pa.Table) -> pa.Table:
        """Chunks (CHUNKS_SCHEMA) of every doc in a table with `doc_id` and `content`."""
        rows: dict[str, list] = {name: [] for name in CHUNKS_SCHEMA.names}
        for doc_id, text in zip(docs.column("doc_id").to_pylist(),
                                docs.column("content").to_pylist()):
            seen: dict[str, int] = {}
            for index, span in enumerate(self.spans(text)):
                chunk_text = text[span.start:span.end]
                digest = chunk_hash(chunk_text)
                occurrence = seen.get(digest, 0)
                seen[digest] = occurrence + 1
                rows["doc_id"].append(doc_id)
                rows["chunk_index"].append(index)
                rows["text"].append(chunk_text)
                rows["content_hash"].append(digest)
                rows["point_id"].append(point_id(doc_id, digest, occurrence))
                rows["n_tokens"].append(span.n_tokens)
        return pa.table(rows, CHUNKS_SCHEMA)
