"""Files as every file-based source sees them: roots (local or a filesystem URI), entries with
a change token, include/exclude globs, and the rules shared by folder and git sources."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from freshness.errors import SourceError
from freshness.util.text import is_blank, strip_bom

DEFAULT_PATTERNS = ("*.md", "*.markdown", "*.txt", "*.rst")
ROOT_SHARD = "default"
DEFAULT_MAX_DOC_BYTES = 2_000_000
EXCLUDE_HINT = "exclude it with FRESHNESS_SOURCE_EXCLUDE (--exclude), e.g. '*.bin'"
# A file hashed within this many seconds of its mtime may be rewritten with the same size in
# the same mtime tick (1 s on object stores and some filesystems): its hash is not trusted by
# the next listing (git's "racy clean" rule). Covers modest clock skew to an object store.
RACY_WINDOW_S = 5.0


@dataclass(frozen=True)
class FileEntry:
    """One file as a listing sees it: no content, just what says whether it changed."""

    doc_id: str  # path relative to the root, '/'-separated
    size: int
    mtime_ns: int
    token: str  # size-mtime (-inode locally): moves whenever the content may have


def split_globs(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """Comma-separated globs (a setting) or a sequence of them, as a tuple."""
    if text is None:
        return ()
    items = text.split(",") if isinstance(text, str) else list(text)
    return tuple(g.strip() for g in items if g.strip())


def glob_match(doc_id: str, pattern: str) -> bool:
    """A glob without '/' matches the file name; with '/' the whole path ('*' crosses '/')."""
    target = doc_id if "/" in pattern else doc_id.rsplit("/", 1)[-1]
    return fnmatch.fnmatchcase(target, pattern)


def redact_uri(uri: str) -> str:
    """A URI without credentials (`s3://key:secret@bucket/x` -> `s3://***@bucket/x`): for
    names, logs and errors."""
    scheme, sep, rest = uri.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return uri
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


def open_root(root: str | Path) -> tuple[pafs.FileSystem, str, bool]:
    """(filesystem, base path, is_local) for a local path or a filesystem URI."""
    text = str(root)
    if "://" in text:
        try:
            fs, base = pafs.FileSystem.from_uri(text)
        except (pa.ArrowInvalid, OSError):
            raise SourceError(  # `from None`: pyarrow's message may repeat the URI's secrets
                f"cannot open source {redact_uri(text)!r}: check the URI; credentials and "
                "endpoints come from the environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...)"
            ) from None
        return fs, base.rstrip("/"), isinstance(fs, pafs.LocalFileSystem)
    return pafs.LocalFileSystem(), str(Path(text).absolute()), True


def hidden(doc_id: str) -> bool:
    """Inside a hidden folder (`.git/`, `.cache/`): never part of the corpus."""
    return any(part.startswith(".") for part in doc_id.split("/")[:-1])


def oversize(size: int, max_doc_bytes: int) -> str | None:
    """The skip reason for a file over the size limit, or None."""
    if size <= max_doc_bytes:
        return None
    return (f"file is {size} bytes, over max_doc_bytes={max_doc_bytes}: split it or raise "
            "FRESHNESS_MAX_DOC_BYTES")


def decode_text(raw: bytes) -> tuple[str | None, str | None]:
    """(text, None) for usable UTF-8 text (a BOM stripped), or (None, the skip reason)."""
    if b"\x00" in raw:
        return None, f"binary file (contains NUL bytes): {EXCLUDE_HINT}"
    try:
        text = strip_bom(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 text (bad byte at offset {exc.start}): re-encode it as UTF-8"
    if is_blank(text):
        return None, "empty document (only whitespace or zero-width characters)"
    return text, None
