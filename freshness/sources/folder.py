"""A folder of text/markdown files; the shard is the first folder level under the root."""

from __future__ import annotations

import json
import os
import stat
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa

from freshness.errors import SourceError
from freshness.sources.base import DOCS_SCHEMA, LISTING_SCHEMA, Discovery, Listing, Skip, Source
from freshness.util.hashing import doc_hash
from freshness.util.shard_names import shard_name_problem
from freshness.util.text import is_blank, printable_name, strip_bom, valid_utf8_name
from freshness.util.timeutil import utc_now

DEFAULT_PATTERNS = ("*.md", "*.markdown", "*.txt", "*.rst")
ROOT_SHARD = "default"
DEFAULT_MAX_DOC_BYTES = 2_000_000
LINKED_FOLDER = ("symlinked folder: not followed (it may lead outside the source root); "
                 "move or copy the files into the source folder")
BAD_NAME = "file name is not valid UTF-8: rename it (e.g. convmv -f latin1 -t utf8)"


class FolderSource(Source):
    """Files under `root` matching `patterns`; files directly in `root` and in a `default/`
    folder form shard `default`.

    Safety: a link is followed only when it resolves inside the root (folders: never); FIFOs,
    sockets and devices are reported, never opened; undecodable names are reported skips."""

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

    def _name_matches(self, path: Path) -> bool:
        return any(path.match(p) for p in self.patterns)

    def discover(self) -> Discovery:
        self._require_root()
        shards: list[str] = []
        skips: list[Skip] = []
        if any(self._name_matches(p) and not p.is_dir() for p in self.root.iterdir()):
            shards.append(ROOT_SHARD)
        for child in sorted(self.root.iterdir()):
            if child.name.startswith(".") or not child.is_dir():
                continue
            label = f"{printable_name(child.name)}/"
            if child.is_symlink():  # never follow a linked shard folder (it may lie outside)
                skips.append(Skip(label, None, LINKED_FOLDER))
                continue
            files, _ = self._walk(child)
            if not files:
                continue
            problem = shard_name_problem(child.name)
            if problem:
                skips.append(Skip(label, None, problem.replace(repr(child.name),
                                                               repr(label[:-1]))))
            elif child.name not in shards:  # a `default/` folder joins the root-level files
                shards.append(child.name)
        return Discovery(shards=shards, skips=skips)

    def refresh(self) -> None:
        """Nothing cached: every listing reads the folder."""

    def change_tokens(self) -> dict[str, str]:
        """Per shard: file count, newest mtime and total size (stat only, no reads)."""
        self._require_root()
        tokens: dict[str, list[int]] = {}
        for shard in self.discover().shards:
            files, _ = self._files(shard) or ([], [])
            stats = [st for st in map(self._stat, files) if st is not None]
            tokens[shard] = [len(stats), max((s.st_mtime_ns for s in stats), default=0),
                             sum(s.st_size for s in stats)]
        return {k: "-".join(map(str, v)) for k, v in tokens.items()}

    def _walk(self, folder: Path) -> tuple[list[Path], list[Skip]]:
        """Name-matching entries under `folder` (links to folders not followed, reported)."""
        found: list[Path] = []
        skips: list[Skip] = []
        for here, dirs, names in os.walk(folder, followlinks=False):
            base = Path(here)
            for name in list(dirs):
                if (base / name).is_symlink():
                    dirs.remove(name)
                    skips.append(Skip(printable_name(self._doc_id(base / name)) + "/", None,
                                      LINKED_FOLDER, keep_indexed=False))
            found += [base / n for n in names if self._name_matches(base / n)]
        return sorted(found), skips

    def _files(self, shard: str) -> tuple[list[Path], list[Skip]] | None:
        """The shard's name-matching entries and the linked folders left out."""
        folder = self.root / shard
        if shard == ROOT_SHARD:
            files = [p for p in self.root.iterdir()
                     if self._name_matches(p) and not p.is_dir()]
            skips: list[Skip] = []
            if folder.is_dir() and not folder.is_symlink():
                more, skips = self._walk(folder)
                files += more
            return sorted(files), [Skip(s.doc_id, shard, s.reason, False) for s in skips]
        if not folder.is_dir() or folder.is_symlink():
            return None
        files, skips = self._walk(folder)
        return files, [Skip(s.doc_id, shard, s.reason, False) for s in skips]

    def _doc_id(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def _refusal(self, path: Path) -> str | None:
        """Why `path` must never be opened (outside the root, not a regular file), or None."""
        real = os.path.realpath(path)
        root = os.path.realpath(self.root)
        if os.path.commonpath([real, root]) != root:
            return (f"symlink points outside the source root ({printable_name(real)}): not "
                    "followed; copy the file into the source folder to index it")
        try:
            mode = os.stat(real).st_mode
        except OSError:
            return None  # vanished or unreadable: `_load` names it
        if not stat.S_ISREG(mode):
            return ("not a regular file (FIFO, socket, device or folder): never opened; "
                    "exclude it with the glob patterns")
        return None

    def _stat(self, path: Path) -> os.stat_result | None:
        """The stat of a readable doc (following links inside the root only), else None."""
        if self._refusal(path):
            return None
        try:
            return path.stat()
        except OSError:
            return None

    def _load(self, path: Path) -> tuple[str | None, str | None, datetime | None]:
        """(text, None, mtime) for a usable file, or (None, reason, None) for a skip."""
        real = os.path.realpath(path)
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as src:
                info = os.fstat(src.fileno())
                if not stat.S_ISREG(info.st_mode):  # swapped in after the check
                    return None, "not a regular file: never read", None
                if info.st_size > self.max_doc_bytes:
                    return None, (
                        f"file is {info.st_size} bytes, over max_doc_bytes={self.max_doc_bytes}:"
                        " split it or raise FRESHNESS_MAX_DOC_BYTES"
                    ), None
                raw = src.read(self.max_doc_bytes + 1)
        except OSError as exc:
            reason = exc.strerror or exc
            return None, f"cannot read file ({reason}): check it exists and is readable", None
        if b"\x00" in raw:
            return None, "binary file (contains NUL bytes): exclude it with the glob patterns", None
        try:
            text = strip_bom(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            return None, (f"not UTF-8 text (bad byte at offset {exc.start}): re-encode it as "
                          "UTF-8"), None
        if is_blank(text):
            return None, "empty document (only whitespace or zero-width characters)", None
        return text, None, datetime.fromtimestamp(info.st_mtime, tz=timezone.utc)

    def _classify(self, shard: str, path: Path) -> tuple[str | None, Skip | None]:
        """(doc id, None) for an entry to read, or (None, the refusal) for one never opened."""
        doc_id = self._doc_id(path)
        if not valid_utf8_name(doc_id):
            return None, Skip(printable_name(doc_id), shard, BAD_NAME, keep_indexed=False)
        refusal = self._refusal(path)
        if refusal:
            return None, Skip(doc_id, shard, refusal, keep_indexed=False)
        return doc_id, None

    def listing(self, shard: str) -> Listing:
        self._require_root()
        scanned_at = utc_now()
        found = self._files(shard)
        if found is None:
            # The shard folder vanished after discovery: report an incomplete listing so
            # that nothing is deleted on the strength of it.
            return Listing(shard, LISTING_SCHEMA.empty_table(), scanned_at, complete=False)
        files, skips = found
        ids, hashes, times = [], [], []
        notes: Counter = Counter()
        for path in files:
            doc_id, refused = self._classify(shard, path)
            if refused:
                skips.append(refused)
                continue
            text, reason, mtime = self._load(path)
            if reason or text is None or mtime is None:
                skips.append(Skip(doc_id, shard, reason or "unreadable"))
                continue
            ids.append(doc_id)
            hashes.append(doc_hash(text))
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
            _, refused = self._classify(shard, path)
            text, reason, mtime = (None, "refused", None) if refused else self._load(path)
            if reason or text is None or mtime is None:
                continue  # vanished or refused since the listing: counted as docs_vanished
            rows["doc_id"].append(doc_id)
            rows["content"].append(text)
            rows["updated_at"].append(min(mtime, utc_now()))
            rows["metadata"].append(json.dumps({"path": doc_id}))
        return pa.table(rows, DOCS_SCHEMA)
