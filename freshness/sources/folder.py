"""A folder of text/markdown files; the shard is the first folder level under the root."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa

from freshness.errors import SourceError
from freshness.sources.base import DOCS_SCHEMA, LISTING_SCHEMA, Discovery, Listing, Skip, Source
from freshness.util.hashing import doc_hash
from freshness.util.shard_names import shard_name_problem
from freshness.util.timeutil import utc_now

DEFAULT_PATTERNS = ("*.md", "*.markdown", "*.txt", "*.rst")
ROOT_SHARD = "default"
DEFAULT_MAX_DOC_BYTES = 2_000_000


class FolderSource(Source):
    """Files under `root` matching `patterns`; files directly in `root` form shard `default`."""

    def __init__(
        self,
        root: str | Path,
        patterns: Sequence[str] = DEFAULT_PATTERNS,
        max_doc_bytes: int = DEFAULT_MAX_DOC_BYTES,
    ) -> None:
        self.root = Path(root)
        self.patterns = tuple(patterns)
        self.max_doc_bytes = max_doc_bytes
        self.name = f"folder:{self.root}"

    def _require_root(self) -> None:
        if not self.root.is_dir():
            raise SourceError(
                f"source folder {str(self.root)!r} does not exist or is not a folder: "
                "set FRESHNESS_SOURCE_PATH (or --path) to your corpus folder"
            )

    def _matches(self, path: Path) -> bool:
        return path.is_file() and any(path.match(p) for p in self.patterns)

    def discover(self) -> Discovery:
        self._require_root()
        shards: list[str] = []
        skips: list[Skip] = []
        if any(self._matches(p) for p in self.root.iterdir()):
            shards.append(ROOT_SHARD)
        for child in sorted(self.root.iterdir()):
            if not child.is_dir() or child.name.startswith("."):
                continue
            if not any(self._matches(p) for p in child.rglob("*")):
                continue
            problem = shard_name_problem(child.name)
            if problem:
                skips.append(Skip(doc_id=f"{child.name}/", shard=None, reason=problem))
            else:
                shards.append(child.name)
        return Discovery(shards=shards, skips=skips)

    def refresh(self) -> None:
        """Nothing cached: every listing reads the folder."""

    def change_tokens(self) -> dict[str, str]:
        """Per shard: file count, newest mtime and total size (stat only, no reads)."""
        self._require_root()
        tokens: dict[str, list[int]] = {}
        for shard in self.discover().shards:
            stats = [p.stat() for p in self._files(shard) or []]
            tokens[shard] = [len(stats), max((s.st_mtime_ns for s in stats), default=0),
                             sum(s.st_size for s in stats)]
        return {k: "-".join(map(str, v)) for k, v in tokens.items()}

    def _files(self, shard: str) -> list[Path] | None:
        if shard == ROOT_SHARD:
            return sorted(p for p in self.root.iterdir() if self._matches(p))
        folder = self.root / shard
        if not folder.is_dir():
            return None
        return sorted(p for p in folder.rglob("*") if self._matches(p))

    def _doc_id(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def _load(self, path: Path) -> tuple[str | None, str | None]:
        """(text, None) for a usable file, or (None, reason) for a skip."""
        try:
            size = path.stat().st_size
            if size > self.max_doc_bytes:
                return None, (
                    f"file is {size} bytes, over max_doc_bytes={self.max_doc_bytes}: split it "
                    "or raise FRESHNESS_MAX_DOC_BYTES"
                )
            raw = path.read_bytes()
        except OSError as exc:
            reason = exc.strerror or exc
            return None, f"cannot read file ({reason}): check it exists and is readable"
        if b"\x00" in raw:
            return None, "binary file (contains NUL bytes): exclude it with the glob patterns"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, f"not UTF-8 text (bad byte at offset {exc.start}): re-encode it as UTF-8"
        if not text.strip():
            return None, "empty document: nothing to embed"
        return text, None

    def listing(self, shard: str) -> Listing:
        self._require_root()
        scanned_at = utc_now()
        files = self._files(shard)
        if files is None:
            # The shard folder vanished after discovery: report an incomplete listing so
            # that nothing is deleted on the strength of it.
            return Listing(shard, LISTING_SCHEMA.empty_table(), scanned_at, complete=False)
        ids, hashes, times, skips = [], [], [], []
        notes: Counter = Counter()
        for path in files:
            text, reason = self._load(path)
            doc_id = self._doc_id(path)
            if reason:
                skips.append(Skip(doc_id, shard, reason))
                continue
            ids.append(doc_id)
            hashes.append(doc_hash(text))
            mtime = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
            if mtime > scanned_at:
                notes["future_timestamp_clamped"] += 1
                mtime = scanned_at
            times.append(mtime)
        docs = pa.table({"doc_id": ids, "doc_hash": hashes, "updated_at": times}, LISTING_SCHEMA)
        return Listing(shard, docs, scanned_at, complete=True, skips=skips, notes=notes)

    def read(self, shard: str, doc_ids: Sequence[str]) -> pa.Table:
        rows: dict[str, list] = {name: [] for name in DOCS_SCHEMA.names}
        for doc_id in doc_ids:
            path = self.root / doc_id
            text, reason = self._load(path)
            if reason:
                continue
            rows["doc_id"].append(doc_id)
            rows["content"].append(text)
            mtime = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
            rows["updated_at"].append(min(mtime, utc_now()))
            rows["metadata"].append(json.dumps({"path": doc_id}))
        return pa.table(rows, DOCS_SCHEMA)
