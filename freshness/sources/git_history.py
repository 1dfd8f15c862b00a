"""A git repository's history as a replay corpus: a snapshot at a start date plus every add,
modify and delete after it, in the schema of `../shared/data/*-replay` (and of
`freshness simulate --corpus`).

Which files are docs and which shard each belongs to is `GitSource`'s rule (subdir, include and
exclude globs, `shard_depth`, size limit, UTF-8 text), so a team can replay its own docs
repository through the simulator with the shards its deployment would see, and pick a budget
from its own change history. The history is the first-parent chain of `ref`, each commit diffed
against its first parent without rename detection (a move is a delete plus an add, as a folder
scan sees it). A version that the source would skip (binary, not UTF-8, too big) is not in the
corpus: a doc that becomes unreadable is a delete, readable again an add; such versions are
counted in the summary. Mode-only changes (same blob) are not changes.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from freshness.errors import SourceError
from freshness.sources.git import GitSource, _hidden
from freshness.util.shard_names import shard_name_problem

REPLAY_SCHEMA = pa.schema([
    ("commit_sha", pa.string()), ("committed_at", pa.timestamp("us", tz="UTC")),
    ("path", pa.string()), ("shard", pa.string()), ("op", pa.string()),
    ("content", pa.string()), ("commit_seq", pa.int32())])
REGULAR_MODES = (0o100644, 0o100755)


@dataclass
class HistoryExport:
    """What an export wrote, and what it left out (counted, never silently)."""

    base_commit: str
    end_commit: str
    snapshot_rows: int
    base_committed_at: datetime | None = None
    end_committed_at: datetime | None = None
    ops: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    commits: int = 0
    commits_with_changes: int = 0
    clock_clamped: int = 0  # commits dated before their first parent: moved up to it
    truncated: bool = False  # a shallow clone: the history before its boundary is missing

    def summary(self, source: GitSource, since: datetime) -> dict:
        return {"source": source.path, "ref": source.ref, "subdir": source.subdir,
                "include": list(source.patterns), "exclude": list(source.exclude),
                "shard_depth": source.shard_depth, "since": since.isoformat(),
                "base_commit": self.base_commit, "end_commit": self.end_commit,
                "base_committed_at": _iso(self.base_committed_at),
                "end_committed_at": _iso(self.end_committed_at),
                "window_days": round((self.end_committed_at - self.base_committed_at)
                                     .total_seconds() / 86_400, 3)
                if self.base_committed_at and self.end_committed_at else 0.0,
                "snapshot_rows": self.snapshot_rows, "replay_ops": dict(self.ops),
                "first_parent_commits_after_base": self.commits,
                "commits_with_doc_changes": self.commits_with_changes,
                "skipped_versions": dict(self.skipped),
                "commit_dates_clamped": self.clock_clamped,
                "shallow_history_before_base": self.truncated,
                "extraction_rule": "freshness.sources.git_history (GitSource's doc and shard "
                                   "rule; first-parent chain, no rename detection)"}


class _Reader:
    """A path's version as the corpus sees it: (shard, text) or a skip reason."""

    def __init__(self, source: GitSource) -> None:
        self.source = source
        self.skipped: Counter = Counter()

    def doc(self, rel: str, blob_id, mode: int) -> tuple[str, str] | None:
        """(shard, text) when `rel` (relative to subdir) is a doc of the corpus; None if not."""
        source = self.source
        if mode not in REGULAR_MODES or not source._wanted(rel) or _hidden(rel):
            return None
        shard = source.shard_of(rel)
        if shard_name_problem(shard) is not None:
            self.skipped["bad shard name"] += 1
            return None
        text, reason = source._load(str(blob_id))  # the source's size limit and UTF-8 rule
        if text is None:
            self.skipped[(reason or "unreadable").split(":")[0]] += 1
            return None
        return shard, text


def _first_parent_chain(source: GitSource) -> list:
    commits, commit = [], source.commit()
    while True:
        commits.append(commit)
        if not commit.parents:
            break
        commit = commit.parents[0]
    return commits[::-1]


def _when(commit) -> datetime:
    return datetime.fromtimestamp(commit.commit_time, tz=timezone.utc)


def export_history(source: GitSource, since: datetime, out: str | Path) -> HistoryExport:
    """Write OUT/snapshot.parquet (the docs at the first first-parent commit at or after
    `since`), OUT/replay.parquet (every later change in commit order) and OUT/summary.json."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SourceError(f"--out {str(out)!r} is a file: pass a folder for snapshot.parquet, "
                          "replay.parquet and summary.json")
    chain = _first_parent_chain(source)
    start = next((i for i, c in enumerate(chain) if _when(c) >= since), None)
    if start is None:
        raise SourceError(f"no commit of {source.ref!r} in {source.path} is at or after "
                          f"{since.isoformat()}: pass an earlier --since")
    reader = _Reader(source)
    base = chain[start]
    root = source._tree_at(base, "")
    if root is None:
        raise SourceError(f"subdir {source.subdir!r} is not a folder at {base.id} in "
                          f"{source.path}: fix --subdir (or pass a later --since)")
    present: dict[str, str] = {}  # path -> shard
    snapshot = {name: [] for name in REPLAY_SCHEMA.names}
    for rel, blob, mode in source._walk(root, "", True):
        found = reader.doc(rel, blob, mode)
        if found is None:
            continue
        present[rel] = found[0]
        _append(snapshot, base, _when(base), 0, rel, found[0], "add", found[1])
    replay = {name: [] for name in REPLAY_SCHEMA.names}
    done = HistoryExport(str(base.id), str(chain[-1].id), len(present), _when(base))
    # a shallow clone ends its chain early: a --since before the boundary starts at the boundary
    done.truncated = bool(source.repo.is_shallow) and start == 0 and _when(base) > since
    clock = _when(base)
    for seq, commit in enumerate(chain[start + 1:], start=1):
        before = len(replay["path"])
        if _when(commit) < clock:
            done.clock_clamped += 1  # the replay's clock never runs backwards
        clock = max(clock, _when(commit))
        old, new = source._tree_at(commit.parents[0], ""), source._tree_at(commit, "")
        deltas = _deltas(source, old, new)
        for rel in sorted(deltas):
            blob, mode = deltas[rel]
            found = reader.doc(rel, blob, mode) if blob is not None else None
            if found is None:
                if rel in present:
                    _append(replay, commit, clock, seq, rel, present.pop(rel), "delete", None)
                continue
            op = "modify" if rel in present else "add"
            present[rel] = found[0]
            _append(replay, commit, clock, seq, rel, found[0], op, found[1])
        done.commits += 1
        done.commits_with_changes += len(replay["path"]) > before
    done.end_committed_at = clock
    done.ops.update(replay["op"])
    done.skipped = reader.skipped
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("snapshot", snapshot), ("replay", replay)):
        pq.write_table(pa.table(rows, REPLAY_SCHEMA), out / f"{name}.parquet",
                       compression="zstd")
    (out / "summary.json").write_text(json.dumps(done.summary(source, since), indent=1) + "\n")
    return done


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when else None


def _deltas(source: GitSource, old, new) -> dict:
    """path -> (new blob id or None when gone, mode) for every path a commit touched below
    the subdir (no rename detection: a delta's old and new path are the same); an unchanged
    blob (a mode-only change) is not a change."""
    if new is None and old is None:
        return {}
    if old is None or new is None:  # the subdir appears or vanishes
        empty = source.repo[source.repo.TreeBuilder().write()]
        old = old if old is not None else empty
        new = new if new is not None else empty
    changes: dict = {}
    for delta in old.diff_to_tree(new).deltas:
        gone = delta.status_char() == "D"
        if not gone and delta.old_file.id == delta.new_file.id \
                and delta.old_file.mode in REGULAR_MODES and delta.new_file.mode in REGULAR_MODES:
            continue
        changes[delta.new_file.path] = (None, 0) if gone else \
            (delta.new_file.id, delta.new_file.mode)
    return changes


def _append(table: dict, commit, when: datetime, seq: int, path: str, shard: str, op: str,
            content: str | None) -> None:
    table["commit_sha"].append(str(commit.id))
    table["committed_at"].append(when)
    table["path"].append(path)
    table["shard"].append(shard)
    table["op"].append(op)
    table["content"].append(content)
    table["commit_seq"].append(seq)
