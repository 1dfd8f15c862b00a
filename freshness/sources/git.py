"""A git repository (working clone or bare) at a branch, tag or commit, read with pygit2.

The corpus is the tree of `ref` (default HEAD), optionally below `subdir`; shards follow the
folder rule (first `shard_depth` folder levels, root files in `default`) and the same
include/exclude globs. Nothing is read from a working tree: only committed content counts.

- change token of a shard: the id of its folder's tree in the ref's commit, so a commit that
  touches one shard moves one token (no blob is read);
- listing: blob ids from the trees; a blob is read (to hash it) only when its id is not the
  one the listing cache holds for that path, so a no-op sync reads no blob content;
- between two commits the listing is patched from the tree diff (O(changed paths));
- each doc's metadata (and so each point's lineage) carries the commit and blob id.

Why pygit2: libgit2 walks and diffs trees in C, and reads an object's id without its content;
dulwich is pure Python by default (slower tree walks at 10 k+ files) and gains nothing here.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone

import pyarrow as pa

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
    ROOT_SHARD,
    decode_text,
    glob_match,
    oversize,
    split_globs,
)
from freshness.util.hashing import doc_hash
from freshness.util.shard_names import shard_name_problem

CACHE_SCHEMA = pa.schema([("doc_id", pa.string()), ("token", pa.string()),
                          ("doc_hash", pa.string()), ("reason", pa.string()),
                          ("updated_at", pa.timestamp("us", tz="UTC"))])
COMMIT_KEY = "commit"


def _pygit2():
    try:
        import pygit2
    except ImportError as exc:
        raise ConfigError("the git source needs pygit2: pip install 'retrieval-freshness[git]'") \
            from exc
    return pygit2


class GitSource(Source):
    """Documents committed in a git repository at `ref`, below `subdir`."""

    def __init__(self, path: str, ref: str | None = None, subdir: str | None = None,
                 patterns: Sequence[str] = DEFAULT_PATTERNS, exclude: Sequence[str] = (),
                 max_doc_bytes: int = DEFAULT_MAX_DOC_BYTES, shard_depth: int = 1) -> None:
        pygit2 = _pygit2()
        try:
            self.repo = pygit2.Repository(str(path))
        except (pygit2.GitError, KeyError) as exc:
            raise SourceError(f"{str(path)!r} is not a git repository ({exc}): pass --path "
                              "(FRESHNESS_SOURCE_PATH) to a clone or a bare repository") from exc
        self.path, self.ref = str(path), ref or "HEAD"
        self.subdir = (subdir or "").strip("/")
        self.patterns = split_globs(patterns) or DEFAULT_PATTERNS
        self.exclude = split_globs(exclude)
        self.max_doc_bytes = max_doc_bytes
        self.shard_depth = shard_depth
        self.name = f"git:{self.path}:{self.ref}:{self.subdir}"
        self._cache: ListingCache | None = None
        # what the cached facts depend on: a change of globs or limits starts afresh
        self._cache_id = "|".join(map(str, (self.name, self.patterns, self.exclude,
                                            shard_depth, max_doc_bytes)))
        self._memo: dict[str, pa.Table] = {}
        self._commit = None
        self.notes: Counter = Counter()  # blobs_read over the source's life (benchmarks)

    @classmethod
    def from_settings(cls, settings) -> GitSource:
        """`--source git --path REPO [--ref BRANCH] [--subdir docs]`."""
        if not settings.source_path:
            raise ConfigError("source_kind=git needs FRESHNESS_SOURCE_PATH (--path): a clone "
                              "or bare repository")
        return cls(settings.source_path, settings.source_ref, settings.source_subdir,
                   split_globs(settings.source_include) or DEFAULT_PATTERNS,
                   split_globs(settings.source_exclude), settings.max_doc_bytes,
                   settings.shard_depth)

    def use_listing_cache(self, cache: ListingCache | None) -> None:
        self._cache = cache

    # -- commits and trees -----------------------------------------------------------------

    def refresh(self) -> None:
        """Resolve the ref again at the next call (a scan sees one commit throughout)."""
        self._commit = None

    def commit(self):
        """The commit this scan reads (resolved once per scan)."""
        if self._commit is None:
            pygit2 = _pygit2()
            try:
                self._commit = self.repo.revparse_single(self.ref).peel(pygit2.Commit)
            except (KeyError, ValueError, pygit2.GitError) as exc:
                raise SourceError(f"git ref {self.ref!r} not found in {self.path}: pass "
                                  "--ref (FRESHNESS_SOURCE_REF) naming a branch, tag or "
                                  "commit") from exc
        return self._commit

    def _tree_at(self, commit, folder: str):
        """The tree at `folder` (relative to subdir) in `commit`, or None."""
        where = "/".join(p for p in (self.subdir, folder) if p)
        tree = commit.tree
        if not where:
            return tree
        try:
            obj = tree[where]
        except KeyError:
            return None
        return obj if obj.type_str == "tree" else None

    def _walk(self, tree, prefix: str, recursive: bool) -> Iterator[tuple[str, str, int]]:
        """(doc_id, blob id, filemode) of the files under a tree (tree objects only)."""
        for entry in tree:
            doc_id = f"{prefix}/{entry.name}" if prefix else entry.name
            if entry.type_str == "tree":
                if recursive and not entry.name.startswith("."):
                    yield from self._walk(self.repo[entry.id], doc_id, True)
            elif entry.type_str == "blob" and self._wanted(doc_id):
                yield doc_id, str(entry.id), entry.filemode

    def _wanted(self, doc_id: str) -> bool:
        return any(glob_match(doc_id, p) for p in self.patterns) and \
            not any(glob_match(doc_id, p) for p in self.exclude)

    def shard_of(self, doc_id: str) -> str:
        folders = doc_id.split("/")[:-1]
        return "/".join(folders[: self.shard_depth]) if folders else ROOT_SHARD

    def _shard_trees(self, commit) -> dict[str, str]:
        """Shard -> token (its folder's tree id; root files: a digest of their blob ids)."""
        root = self._tree_at(commit, "")
        if root is None:
            raise SourceError(f"subdir {self.subdir!r} is not a folder at {self.ref} in "
                              f"{self.path}: fix --subdir (FRESHNESS_SOURCE_SUBDIR)")
        tokens: dict[str, str] = {}
        top_files = [f"{d}:{b}" for d, b, _ in self._walk(root, "", False)]
        if top_files:
            tokens[ROOT_SHARD] = doc_hash("\n".join(top_files))

        def visit(tree, prefix: str, depth: int) -> None:
            for entry in tree:
                if entry.type_str != "tree" or entry.name.startswith("."):
                    continue
                name = f"{prefix}/{entry.name}" if prefix else entry.name
                sub = self.repo[entry.id]
                if depth == self.shard_depth:
                    if any(True for _ in self._walk(sub, name, True)):
                        tokens[name] = str(entry.id)
                    continue
                files = [f"{d}:{b}" for d, b, _ in self._walk(sub, name, False)]
                if files:
                    tokens[name] = doc_hash("\n".join(files))
                visit(sub, name, depth + 1)

        visit(root, "", 1)
        return tokens

    # -- the Source methods ----------------------------------------------------------------

    def discover(self) -> Discovery:
        return Discovery.of_names(sorted(self._shard_trees(self.commit())),
                                  lambda name: f"{name}/")

    def change_tokens(self) -> dict[str, str]:
        """Per shard: its folder's tree id in the ref's commit (no blob is read)."""
        self.refresh()
        return {s: t for s, t in self._shard_trees(self.commit()).items()
                if shard_name_problem(s) is None}

    def _shard_blobs(self, commit, shard: str) -> dict[str, str] | None:
        """doc_id -> blob id of a shard's files at `commit`, or None when the folder is gone."""
        if shard == ROOT_SHARD:
            tree, recursive, prefix = self._tree_at(commit, ""), False, ""
        else:
            tree, prefix = self._tree_at(commit, shard), shard
            recursive = shard.count("/") + 1 >= self.shard_depth
        if tree is None:
            return None
        return {d: b for d, b, mode in self._walk(tree, prefix, recursive)
                if self.shard_of(d) == shard and mode != 0o120000}  # symlinks: not followed

    def _previous(self, shard: str) -> pa.Table | None:
        if shard in self._memo:
            return self._memo[shard]
        table = self._cache.load(self._cache_id, shard) if self._cache else None
        if table is None or table.schema.names != CACHE_SCHEMA.names:
            return None
        return table

    def _patched_blobs(self, shard: str, previous: pa.Table | None, commit) -> dict | None:
        """The shard's blob ids, patched from the tree diff since the cached commit when there
        is one (O(changed)); a full tree walk otherwise."""
        meta = (previous.schema.metadata or {}) if previous is not None else {}
        old_sha = meta.get(COMMIT_KEY.encode(), b"").decode()
        if previous is None or not old_sha:
            return self._shard_blobs(commit, shard)
        if old_sha == str(commit.id):
            return dict(zip(previous["doc_id"].to_pylist(), previous["token"].to_pylist()))
        try:
            old_commit = self.repo[old_sha]
        except (KeyError, ValueError):
            return self._shard_blobs(commit, shard)  # history rewritten: walk the tree
        folder = "" if shard == ROOT_SHARD else shard
        old_tree, new_tree = self._tree_at(old_commit, folder), self._tree_at(commit, folder)
        if new_tree is None:
            return None
        if old_tree is None:
            return self._shard_blobs(commit, shard)
        blobs = dict(zip(previous["doc_id"].to_pylist(), previous["token"].to_pylist()))
        if old_tree.id == new_tree.id:
            return blobs
        prefix = folder
        for delta in old_tree.diff_to_tree(new_tree).deltas:
            for file, present in ((delta.old_file, False), (delta.new_file, True)):
                doc_id = f"{prefix}/{file.path}" if prefix else file.path
                if not self._wanted(doc_id) or self.shard_of(doc_id) != shard or \
                        _hidden(doc_id[len(prefix):]):
                    continue
                if present and delta.status_char() != "D" and file.mode != 0o120000:
                    blobs[doc_id] = str(file.id)
                elif not present:
                    blobs.pop(doc_id, None)
        return blobs

    def listing(self, shard: str) -> Listing:
        commit = self.commit()
        scanned_at = datetime.now(timezone.utc)
        committed_at = min(datetime.fromtimestamp(commit.commit_time, tz=timezone.utc),
                           scanned_at)
        previous = self._previous(shard)
        blobs = self._patched_blobs(shard, previous, commit)
        if blobs is None:
            return Listing(shard, LISTING_SCHEMA.empty_table(), scanned_at, complete=False)
        known = {r["doc_id"]: r for r in previous.to_pylist()} if previous is not None else {}
        rows, skips, notes = [], [], Counter()
        for doc_id, blob in sorted(blobs.items()):
            old = known.get(doc_id)
            if old and old["token"] == blob:
                row = old
                notes["docs_hash_reused"] += 1
            else:
                text, reason = self._load(blob)
                row = {"doc_id": doc_id, "token": blob, "reason": reason,
                       "doc_hash": doc_hash(text) if text is not None else None,
                       "updated_at": committed_at}
                notes["docs_hashed"] += 1
            rows.append(row)
            if row["reason"]:
                skips.append(Skip(doc_id, shard, row["reason"]))
        table = pa.Table.from_pylist(rows, CACHE_SCHEMA).replace_schema_metadata(
            {COMMIT_KEY: str(commit.id)})
        self._remember(shard, previous, table)
        good = [r for r in rows if not r["reason"]]
        docs = pa.Table.from_pylist([{"doc_id": r["doc_id"], "doc_hash": r["doc_hash"],
                                      "updated_at": r["updated_at"]} for r in good],
                                    LISTING_SCHEMA)
        return Listing(shard, docs, scanned_at, complete=True, skips=skips, notes=notes)

    def _remember(self, shard: str, previous: pa.Table | None, table: pa.Table) -> None:
        self._memo[shard] = table
        if self._cache is not None and (previous is None or not previous.equals(
                table, check_metadata=True)):
            self._cache.save(self._cache_id, shard, table)

    def _load(self, blob_id: str) -> tuple[str | None, str | None]:
        blob = self.repo[blob_id]
        too_big = oversize(blob.size, self.max_doc_bytes)
        if too_big:
            return None, too_big
        self.notes["blobs_read"] += 1
        return decode_text(blob.data)

    def read(self, shard: str, doc_ids: Sequence[str]) -> pa.Table:
        commit = self.commit()
        root = self._tree_at(commit, "")
        committed_at = min(datetime.fromtimestamp(commit.commit_time, tz=timezone.utc),
                           datetime.now(timezone.utc))
        rows: dict[str, list] = {name: [] for name in DOCS_SCHEMA.names}
        for doc_id in doc_ids:
            if self.shard_of(doc_id) != shard or root is None:
                continue
            try:
                entry = root[doc_id]
            except KeyError:
                continue
            if entry.type_str != "blob" or entry.filemode == 0o120000:
                continue
            text, reason = self._load(str(entry.id))
            if reason:
                continue
            rows["doc_id"].append(doc_id)
            rows["content"].append(text)
            rows["updated_at"].append(committed_at)
            rows["metadata"].append(json.dumps({"path": doc_id, "commit": str(commit.id),
                                                "blob": str(entry.id)}))
        return pa.table(rows, DOCS_SCHEMA)


def _hidden(rel: str) -> bool:
    return any(part.startswith(".") for part in rel.strip("/").split("/")[:-1])
