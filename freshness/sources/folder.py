"""A folder of text files, local or on object storage (s3://, gs://, abfs://, any pyarrow URI).

The shard is the first folder level under the root (`shard_depth` levels for nested shards such
as `tenants/acme`); files directly in the root form shard `default`. Each listing stats the
files and hashes only those whose change token (size, mtime, plus the inode locally) moved since
the last listing of the shard: the tokens and hashes are kept in a per-shard listing cache (in
the state when the runtime attaches one), so a no-op sync reads no file content.

Object stores are reached through `pyarrow.fs` (credentials and endpoints from the standard
environment: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, GOOGLE_APPLICATION_CREDENTIALS, ...). A local
root is listed with `os.walk`, which (unlike pyarrow's local listing) neither follows symlinks
nor fails on file names that are not UTF-8; local files are opened without following links.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from freshness.errors import ConfigError, SourceError
from freshness.sources.base import (
    DOCS_SCHEMA,
    LISTING_SCHEMA,
    Discovery,
    Listing,
    ListingCache,
    Skip,
    Source,
)
from freshness.sources.files import (
    DEFAULT_MAX_DOC_BYTES,
    DEFAULT_PATTERNS,
    EXCLUDE_HINT,
    RACY_WINDOW_S,
    ROOT_SHARD,
    FileEntry,
    decode_text,
    glob_match,
    hidden,
    open_root,
    oversize,
    redact_uri,
    split_globs,
)
from freshness.util.hashing import doc_hash
from freshness.util.shard_names import shard_name_problem
from freshness.util.text import printable_name, valid_utf8_name
from freshness.util.timeutil import utc_now

CACHE_SCHEMA = pa.schema([("doc_id", pa.string()), ("token", pa.string()),
                          ("doc_hash", pa.string()), ("reason", pa.string())])
LINKED_FOLDER = ("symlinked folder: not followed (it may lead outside the source root); "
                 "move or copy the files into the source folder")
BAD_NAME = "file name is not valid UTF-8: rename it (e.g. convmv -f latin1 -t utf8)"
SCAN_REUSE_S = 300.0  # a sync's listings reuse its discover() scan for this long


class FolderSource(Source):
    """Files under `root` whose names match `patterns` (include globs) and no exclude glob."""

    def __init__(
        self,
        root: str | Path,
        patterns: Sequence[str] = DEFAULT_PATTERNS,
        max_doc_bytes: int = DEFAULT_MAX_DOC_BYTES,
        exclude: Sequence[str] = (),
        shard_depth: int = 1,
        filesystem: pafs.FileSystem | None = None,
        racy_window_s: float = RACY_WINDOW_S,
    ) -> None:
        if shard_depth < 1:
            raise SourceError(f"shard_depth={shard_depth}: use 1 or more folder levels")
        self.uri = redact_uri(str(root))  # for names and messages; never credentials
        if filesystem is not None:
            self.fs, self.base, self.local = filesystem, str(root).rstrip("/"), \
                isinstance(filesystem, pafs.LocalFileSystem)
        else:
            self.fs, self.base, self.local = open_root(root)
        self.root = Path(self.base) if self.local else None
        self.patterns = split_globs(patterns) or DEFAULT_PATTERNS
        self.exclude = split_globs(exclude)
        self.max_doc_bytes = max_doc_bytes
        self.shard_depth = shard_depth
        self.racy_window_ns = int(racy_window_s * 1e9)
        self.name = f"folder:{self.uri}"
        self._cache: ListingCache | None = None
        # what the cached facts depend on: a change of globs or limits starts afresh
        self._cache_id = "|".join(map(str, (self.name, self.patterns, self.exclude,
                                            shard_depth, max_doc_bytes)))
        self._memo: dict[str, dict[str, tuple[str, str | None, str | None]]] = {}
        self._scanned: tuple[float, list[FileEntry], list[Skip]] | None = None

    @classmethod
    def from_settings(cls, settings) -> FolderSource:
        """FRESHNESS_SOURCE_PATH (a folder or URI) with the include/exclude globs."""
        if not settings.source_path:
            raise ConfigError("source_kind=folder needs FRESHNESS_SOURCE_PATH (--path): a "
                              "folder or an object-storage URI such as s3://bucket/docs")
        return cls(settings.source_path, split_globs(settings.source_include) or DEFAULT_PATTERNS,
                   settings.max_doc_bytes, split_globs(settings.source_exclude),
                   settings.shard_depth)

    def use_listing_cache(self, cache: ListingCache | None) -> None:
        self._cache = cache

    # -- listing the files (stat only) ---------------------------------------------------

    def _require_root(self) -> None:
        if self.local:
            if not os.path.isdir(self.base):
                raise SourceError(
                    f"source folder {self.uri!r} does not exist or is not a folder: "
                    "set FRESHNESS_SOURCE_PATH (or --path) to your corpus folder"
                )
            return
        try:
            kind = self.fs.get_file_info(self.base).type
        except OSError as exc:
            raise SourceError(f"cannot list source {self.uri!r} ({exc}): check the URI and the "
                              "credentials in the environment") from exc
        if kind != pafs.FileType.Directory:
            raise SourceError(f"source {self.uri!r} holds no objects: check the bucket and "
                              "prefix (FRESHNESS_SOURCE_PATH)")

    def _wanted(self, doc_id: str) -> bool:
        return any(glob_match(doc_id, p) for p in self.patterns) and \
            not any(glob_match(doc_id, p) for p in self.exclude)

    def _scan(self, prefix: str = "", recursive: bool = True) -> tuple[list[FileEntry], list[Skip]]:
        """Files under `prefix` (relative, '' = root) that the globs select, and skips."""
        if self.local:
            return self._scan_local(prefix, recursive)
        where = f"{self.base}/{prefix}".rstrip("/")
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(where, recursive=recursive,
                                                            allow_not_found=True))
        except OSError as exc:
            raise SourceError(f"cannot list source {self.uri!r} ({exc})") from exc
        entries = []
        for info in infos:
            doc_id = info.path[len(self.base) + 1:]
            if info.type != pafs.FileType.File or hidden(doc_id) or not self._wanted(doc_id):
                continue
            entries.append(FileEntry(doc_id, int(info.size or 0), int(info.mtime_ns or 0),
                                     f"{info.size}-{info.mtime_ns}"))
        return entries, []

    def _scan_local(self, prefix: str, recursive: bool) -> tuple[list[FileEntry], list[Skip]]:
        """os.walk without following folder links (each reported); files via `_stat_local`."""
        top = os.path.join(self.base, prefix) if prefix else self.base
        entries: list[FileEntry] = []
        skips: list[Skip] = []
        for folder, dirs, files in os.walk(top, followlinks=False):
            rel_folder = os.path.relpath(folder, self.base)
            rel_folder = "" if rel_folder == "." else rel_folder.replace(os.sep, "/")
            kept = []
            for name in sorted(dirs):
                rel = f"{rel_folder}/{name}" if rel_folder else name
                if name.startswith("."):
                    continue
                if os.path.islink(os.path.join(folder, name)):
                    skips.append(Skip(printable_name(rel) + "/", None, LINKED_FOLDER,
                                      keep_indexed=False))
                elif recursive:
                    kept.append(name)
            dirs[:] = kept
            for name in sorted(files):
                doc_id = f"{rel_folder}/{name}" if rel_folder else name
                if not self._wanted(doc_id):
                    continue
                entry, refusal = self._stat_local(doc_id, walked=True)
                if refusal:
                    skips.append(refusal)
                elif entry:
                    entries.append(entry)
            if not recursive:
                break
        return entries, skips

    def _stat_local(self, doc_id: str, walked: bool = False
                    ) -> tuple[FileEntry | None, Skip | None]:
        """A local file's entry (a link followed only when it resolves inside the root), or
        the refusal of one never to be opened (bad name, outside the root, not regular).
        `walked`: found by the walk, whose folders are real (no links): only a link in the
        last component needs resolving, so a plain file costs one lstat."""
        if not valid_utf8_name(doc_id):
            return None, Skip(printable_name(doc_id), None, BAD_NAME, keep_indexed=False)
        path = os.path.join(self.base, doc_id)
        if walked:
            try:
                info = os.lstat(path)
            except OSError:
                return None, None  # vanished while listing: the next scan sees it
            if stat.S_ISREG(info.st_mode):
                return FileEntry(doc_id, info.st_size, info.st_mtime_ns,
                                 f"{info.st_size}-{info.st_mtime_ns}-{info.st_ino}"), None
        real = os.path.realpath(path)
        root = os.path.realpath(self.base)
        if os.path.commonpath([real, root]) != root:
            return None, Skip(doc_id, None, (
                f"symlink points outside the source root ({printable_name(real)}): not "
                "followed; copy the file into the source folder to index it"), False)
        try:
            info = os.stat(real)
        except OSError:
            return None, None  # vanished while listing: the next scan sees it
        if not stat.S_ISREG(info.st_mode):
            return None, Skip(doc_id, None, "not a regular file (FIFO, socket, device or "
                              f"folder): never opened; {EXCLUDE_HINT}", False)
        token = f"{info.st_size}-{info.st_mtime_ns}-{info.st_ino}"
        return FileEntry(doc_id, info.st_size, info.st_mtime_ns, token), None

    def shard_of(self, doc_id: str) -> str:
        """The shard a file belongs to: its first `shard_depth` folder levels, or `default`."""
        folders = doc_id.split("/")[:-1]
        return "/".join(folders[: self.shard_depth]) if folders else ROOT_SHARD

    def _shard_files(self, shard: str) -> tuple[list[FileEntry], list[Skip]] | None:
        """The shard's files, or None when its folder is gone (listing incomplete)."""
        if self._scanned and time.monotonic() - self._scanned[0] < SCAN_REUSE_S and \
                (shard == ROOT_SHARD or not self.local
                 or os.path.isdir(os.path.join(self.base, shard))):
            _, entries, skips = self._scanned  # discover()'s scan of this sync: stat once
            entries = [e for e in entries if self.shard_of(e.doc_id) == shard]
            if entries or self.local:
                return entries, [s for s in skips if self.shard_of(s.doc_id) == shard]
        if shard == ROOT_SHARD:  # files in the root and in a `default/` folder
            entries, skips = self._scan("", recursive=False)
            has_folder = not self.local or os.path.isdir(os.path.join(self.base, ROOT_SHARD))
            more, more_skips = self._scan(ROOT_SHARD) if has_folder else ([], [])
            entries, skips = entries + more, skips + more_skips
        else:
            nested = shard.count("/") + 1 < self.shard_depth  # files directly in this folder
            if self.local and not os.path.isdir(os.path.join(self.base, shard)):
                return None
            entries, skips = self._scan(shard, recursive=not nested)
            if not self.local and not entries:
                return None  # no objects under the prefix: it is gone (or being rewritten)
        entries = [e for e in entries if self.shard_of(e.doc_id) == shard]
        return entries, [s for s in skips if self.shard_of(s.doc_id) == shard]

    # -- the Source methods ----------------------------------------------------------------

    def discover(self) -> Discovery:
        self._require_root()
        entries, refused = self._scan()
        self._scanned = (time.monotonic(), entries, refused)
        found = Discovery.of_names(sorted({self.shard_of(e.doc_id) for e in entries}),
                                   lambda name: f"{printable_name(name)}/")
        # refusals outside any listed shard (a linked shard folder) are reported here
        found.skips += [s for s in refused if self.shard_of(s.doc_id) not in found.shards]
        return found

    def refresh(self) -> None:
        """Forget the last discover() scan: the next listings stat the files again (hashes
        are reused by token)."""
        self._scanned = None

    def change_tokens(self) -> dict[str, str]:
        """Per shard: file count, newest mtime, total size and a digest of the file tokens
        (one listing, no reads)."""
        self._require_root()
        entries, _ = self._scan()
        groups: dict[str, list[FileEntry]] = {}
        for entry in entries:
            groups.setdefault(self.shard_of(entry.doc_id), []).append(entry)
        return {shard: "-".join(map(str, (len(files), max(f.mtime_ns for f in files),
                                          sum(f.size for f in files),
                                          doc_hash("\n".join(f"{f.doc_id}:{f.token}"
                                                             for f in files))[:16])))
                for shard, files in groups.items() if shard_name_problem(shard) is None}

    def _previous(self, shard: str) -> dict[str, tuple[str, str | None, str | None]]:
        """doc_id -> (token, doc_hash, skip reason) from the last listing of the shard."""
        if shard in self._memo:
            return self._memo[shard]
        table = self._cache.load(self._cache_id, shard) if self._cache else None
        if table is None or table.schema.names != CACHE_SCHEMA.names:
            return {}
        return {r["doc_id"]: (r["token"], r["doc_hash"], r["reason"]) for r in table.to_pylist()}

    def listing(self, shard: str) -> Listing:
        self._require_root()
        scanned_at = utc_now()
        racy_after_ns = time.time_ns() - self.racy_window_ns
        found = self._shard_files(shard)
        if found is None:
            # The shard folder vanished after discovery: report an incomplete listing so
            # that nothing is deleted on the strength of it.
            return Listing(shard, LISTING_SCHEMA.empty_table(), scanned_at, complete=False)
        entries, skips = found
        skips = [Skip(s.doc_id, shard, s.reason, s.keep_indexed) for s in skips]
        previous, current = self._previous(shard), {}
        ids, hashes, times = [], [], []
        notes: Counter = Counter()
        for entry in entries:
            known = previous.get(entry.doc_id)
            if known and known[0] == entry.token:
                digest, reason = known[1], known[2]
                notes["docs_hash_reused"] += 1
            else:
                text, reason = self._load(entry)
                digest = doc_hash(text) if text is not None else None
                notes["docs_hashed"] += 1
            # hash again next time (see RACY_WINDOW_S); a filesystem without mtimes always
            racy = entry.mtime_ns >= racy_after_ns or not entry.mtime_ns
            current[entry.doc_id] = ("" if racy else entry.token, digest, reason)
            if reason:
                skips.append(Skip(entry.doc_id, shard, reason))
                continue
            mtime = datetime.fromtimestamp(entry.mtime_ns / 1e9, tz=timezone.utc)
            if mtime > scanned_at:
                notes["future_timestamp_clamped"] += 1
                mtime = scanned_at
            ids.append(entry.doc_id)
            hashes.append(digest)
            times.append(mtime)
        self._remember(shard, previous, current)
        docs = pa.table({"doc_id": ids, "doc_hash": hashes, "updated_at": times}, LISTING_SCHEMA)
        return Listing(shard, docs, scanned_at, complete=True, skips=skips, notes=notes)

    def _remember(self, shard: str, previous: dict, current: dict) -> None:
        self._memo[shard] = current
        if self._cache is not None and current != previous:
            rows = [{"doc_id": k, "token": v[0], "doc_hash": v[1], "reason": v[2]}
                    for k, v in sorted(current.items())]
            self._cache.save(self._cache_id, shard, pa.Table.from_pylist(rows, CACHE_SCHEMA))

    def _entry(self, doc_id: str) -> FileEntry | None:
        """Stat one doc by id (ids that could leave the root are refused)."""
        if not doc_id or doc_id.startswith("/") or any(p in ("", ".", "..")
                                                       for p in doc_id.split("/")):
            return None
        if self.local:
            entry, _ = self._stat_local(doc_id)
            return entry
        try:
            info = self.fs.get_file_info(f"{self.base}/{doc_id}")
        except OSError:
            return None
        if info.type != pafs.FileType.File:
            return None
        return FileEntry(doc_id, int(info.size or 0), int(info.mtime_ns or 0),
                         f"{info.size}-{info.mtime_ns}")

    def _read_bytes(self, entry: FileEntry) -> bytes:
        path = f"{self.base}/{entry.doc_id}"
        if not self.local:
            with self.fs.open_input_stream(path) as src:
                return src.read()
        real = os.path.realpath(path)  # `_stat_local` checked it lies inside the root
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as src:
            if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):  # swapped in after the stat
                raise OSError(0, "not a regular file: never read")
            return src.read(self.max_doc_bytes + 1)

    def _load(self, entry: FileEntry) -> tuple[str | None, str | None]:
        """(text, None) for a usable file, or (None, reason) for a skip."""
        too_big = oversize(entry.size, self.max_doc_bytes)
        if too_big:
            return None, too_big
        try:
            raw = self._read_bytes(entry)
        except OSError as exc:
            reason = exc.strerror or exc
            return None, f"cannot read file ({reason}): check it exists and is readable"
        if len(raw) > self.max_doc_bytes:
            return None, (f"file grew over max_doc_bytes={self.max_doc_bytes} while read: "
                          "split it or raise FRESHNESS_MAX_DOC_BYTES")
        return decode_text(raw)

    def read(self, shard: str, doc_ids: Sequence[str]) -> pa.Table:
        rows: dict[str, list] = {name: [] for name in DOCS_SCHEMA.names}
        now = utc_now()
        for doc_id in doc_ids:
            entry = self._entry(doc_id)
            if entry is None or self.shard_of(doc_id) != shard:
                continue
            text, reason = self._load(entry)
            if reason:
                continue
            rows["doc_id"].append(doc_id)
            rows["content"].append(text)
            rows["updated_at"].append(min(datetime.fromtimestamp(entry.mtime_ns / 1e9,
                                                                 tz=timezone.utc), now))
            rows["metadata"].append(json.dumps({"path": doc_id}))
        return pa.table(rows, DOCS_SCHEMA)
