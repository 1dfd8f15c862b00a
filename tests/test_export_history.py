"""`freshness export-history`: a git history as a replay corpus.

The invariant, over random histories (adds, edits, deletes, moves, binary versions, symlinks,
mode-only changes, files outside the globs or in hidden folders, side branches merged into the
first-parent chain, commit dates that run backwards): replaying the snapshot and the changes up
to any first-parent commit gives exactly the docs, shards and texts that the git source itself
lists and reads at that commit; every op is consistent with the state before it (add only when
absent, modify or delete only when present); the replay's clock never runs backwards; and the
simulator reads the result.
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pygit2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from freshness.cli.main import main as cli
from freshness.errors import SourceError
from freshness.policy.replay import ChangeLog
from freshness.sources.git import GitSource
from freshness.sources.git_history import export_history

T0 = 1_700_000_000
PATHS = ["docs/a/one.md", "docs/a/two.md", "docs/a/deep/three.md", "docs/b/four.md",
         "docs/b/five.txt", "docs/c/six.md", "docs/top.md", "docs/.hidden/seven.md",
         "docs/a/image.png", "outside/eight.md"]
OPS = st.lists(st.tuples(st.sampled_from(["write", "write", "write", "delete", "move",
                                          "binary", "symlink", "chmod"]),
                         st.sampled_from(PATHS), st.sampled_from(PATHS),
                         st.integers(0, 3)), min_size=1, max_size=4)
COMMITS = st.lists(st.tuples(OPS, st.integers(-3_600, 5 * 86_400), st.booleans()),
                   min_size=3, max_size=12)


class History:
    """A repository built commit by commit with pygit2, on a first-parent chain `main`."""

    def __init__(self, root: Path) -> None:
        self.repo = pygit2.init_repository(str(root / "repo.git"), bare=True,
                                           initial_head="main")
        self.files: dict[str, tuple[bytes, int]] = {}
        self.head = None
        self.clock = T0
        self.edits = 0

    def _tree(self, files: dict) -> pygit2.Oid:
        index = pygit2.Index()
        for path, (data, mode) in files.items():
            index.add(pygit2.IndexEntry(path, self.repo.create_blob(data), mode))
        return index.write_tree(self.repo)

    def _apply(self, files: dict, ops) -> None:
        for op, path, other, n in ops:
            self.edits += 1
            if op == "write":
                files[path] = (f"{path} version {self.edits} {n}\n".encode(), 0o100644)
            elif op == "delete":
                files.pop(path, None)
            elif op == "move" and path in files and other != path:
                files[other] = files.pop(path)
            elif op == "binary":
                files[path] = (b"\x00\x01 not text", 0o100644)
            elif op == "symlink":
                files[path] = (other.encode(), 0o120000)
            elif op == "chmod" and path in files:
                data, mode = files[path]
                files[path] = (data, 0o100755 if mode == 0o100644 else 0o100644)

    def commit(self, ops, gap: int, merge_side_branch: bool) -> None:
        self.clock += gap
        sig = pygit2.Signature("t", "t@example.com", self.clock, 0)
        parents = [self.head] if self.head is not None else []
        if merge_side_branch and self.head is not None:
            side_files = dict(self.files)
            self._apply(side_files, ops[:1])  # a side commit, then the merge brings it in
            side = self.repo.create_commit(None, sig, sig, "side", self._tree(side_files),
                                           [self.head])
            self._apply(side_files, ops[1:])
            self.files = side_files
            parents = [self.head, side]
        else:
            self._apply(self.files, ops)
        self.head = self.repo.create_commit("refs/heads/main", sig, sig, "docs",
                                            self._tree(self.files), parents)


def source_view(repo_path: str, ref: str) -> dict[str, tuple[str, str]]:
    """path -> (shard, text) as the git source lists and reads it at `ref`."""
    source = GitSource(repo_path, ref=ref, subdir="docs", shard_depth=2)
    if "docs" not in source.commit().tree:
        return {}  # every doc deleted: the source refuses the missing subdir, the replay is empty
    view = {}
    for shard in source.discover().shards:
        ids = source.listing(shard).docs["doc_id"].to_pylist()
        for row in source.read(shard, ids).to_pylist():
            view[row["doc_id"]] = (shard, row["content"])
    return view


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(commits=COMMITS, start=st.integers(0, 2))
def test_replay_equals_the_source_at_every_commit(tmp_path_factory, commits, start):
    root = tmp_path_factory.mktemp("history")
    history = History(root)
    history.commit([("write", "docs/a/one.md", "", 0), ("write", "docs/top.md", "", 0)], 0,
                   False)
    for ops, gap, merge in commits:
        history.commit(ops, gap, merge)
    chain = [history.repo[history.head]]
    while chain[-1].parents:
        chain.append(chain[-1].parents[0])
    chain.reverse()
    base = chain[min(start, len(chain) - 1)]
    since = datetime.fromtimestamp(base.commit_time, timezone.utc)
    first = next(c for c in chain if c.commit_time >= base.commit_time)  # dates may go back
    source = GitSource(str(root / "repo.git"), ref="main", subdir="docs", shard_depth=2)
    out = root / "replay"
    done = export_history(source, since, out)
    assert done.base_commit == str(first.id)

    snapshot = pq.read_table(out / "snapshot.parquet").to_pylist()
    replay = pq.read_table(out / "replay.parquet").to_pylist()
    state = {r["path"]: (r["shard"], r["content"]) for r in snapshot}
    assert state == source_view(str(root / "repo.git"), str(first.id))
    seqs = chain[chain.index(first):]
    last_time = snapshot[0]["committed_at"] if snapshot else None
    for seq, commit in enumerate(seqs[1:], start=1):
        for row in (r for r in replay if r["commit_seq"] == seq):
            assert row["commit_sha"] == str(commit.id)
            if last_time is not None:
                assert row["committed_at"] >= last_time  # the clock never runs backwards
            last_time = row["committed_at"]
            if row["op"] == "add":
                assert row["path"] not in state
                state[row["path"]] = (row["shard"], row["content"])
            elif row["op"] == "modify":
                assert row["path"] in state and state[row["path"]][1] != row["content"]
                state[row["path"]] = (row["shard"], row["content"])
            else:
                assert row["op"] == "delete" and row["content"] is None
                assert state.pop(row["path"])[0] == row["shard"]
        assert state == source_view(str(root / "repo.git"), str(commit.id)), seq
    assert {r["commit_seq"] for r in replay} <= set(range(1, len(seqs)))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["replay_ops"] == {op: sum(r["op"] == op for r in replay)
                                     for op in ("add", "modify", "delete")
                                     if any(r["op"] == op for r in replay)}
    if replay:  # the simulator reads what the export writes
        log = ChangeLog.from_parquet(str(out / "snapshot.parquet"), str(out / "replay.parquet"))
        assert len(log.times) == len(replay) and (log.times[1:] >= log.times[:-1]).all()


def test_cli_writes_a_corpus_that_simulate_replays(tmp_path, capsys):
    history = History(tmp_path)
    history.commit([("write", p, "", 0) for p in PATHS[:6]], 0, False)
    for day in range(1, 30):
        history.commit([("write", PATHS[day % 6], "", day)], 86_400, False)
    history.commit([("binary", "docs/b/four.md", "", 0)], 86_400, False)
    since = datetime.fromtimestamp(T0 + 86_400, timezone.utc).isoformat()
    out = tmp_path / "corpus"
    assert cli(["export-history", "--path", str(tmp_path / "repo.git"), "--subdir", "docs",
                "--include", "*.md,*.txt", "--shard-depth", "2", "--since", since,
                "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["snapshot_rows"] == 6 and summary["replay_ops"] == {"modify": 28,
                                                                       "delete": 1}
    assert summary["skipped_versions"] == {"binary file (contains NUL bytes)": 1}
    assert summary["window_days"] == 29.0  # from the first commit at or after --since
    assert cli(["simulate", "--snapshot", str(out / "snapshot.parquet"), "--replay",
                str(out / "replay.parquet"), "--policy", "uniform", "--parameter", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"] > 0


def test_bad_input_names_the_fix(tmp_path, capsys):
    history = History(tmp_path)
    history.commit([("write", "docs/a/one.md", "", 0)], 0, False)
    source = GitSource(str(tmp_path / "repo.git"), ref="main", subdir="docs")
    with pytest.raises(SourceError, match="--since"):
        export_history(source, datetime(2100, 1, 1, tzinfo=timezone.utc), tmp_path / "out")
    missing = GitSource(str(tmp_path / "repo.git"), ref="main", subdir="nowhere")
    with pytest.raises(SourceError, match="--subdir"):
        export_history(missing, datetime(2000, 1, 1, tzinfo=timezone.utc), tmp_path / "out")
    assert cli(["export-history", "--path", str(tmp_path / "repo.git"), "--since", "yesterday",
                "--out", str(tmp_path / "out")]) == 2
    assert "--since 'yesterday' is not an ISO date" in capsys.readouterr().err
    assert cli(["export-history", "--path", str(tmp_path / "nothing"), "--since", "2020-01-01",
                "--out", str(tmp_path / "out")]) == 2
    assert "is not a git repository" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    (tmp_path / "a-file").write_text("not a folder")
    assert cli(["export-history", "--path", str(tmp_path / "repo.git"), "--since", "2000-01-01",
                "--out", str(tmp_path / "a-file")]) == 2
    assert "is a file: pass a folder" in capsys.readouterr().err
    assert cli(["export-history", "--path", str(tmp_path / "repo.git"), "--ref", "nope",
                "--since", "2000-01-01", "--out", str(tmp_path / "out")]) == 2
    assert "git ref 'nope' not found" in capsys.readouterr().err


def test_a_shallow_clone_says_its_history_is_cut(tmp_path):
    """A shallow clone has no commits before its boundary: the export starts there and says so
    in the summary instead of passing a later start off as the requested one."""
    history = History(tmp_path)
    for day in range(6):
        history.commit([("write", PATHS[day % 3], "", day)], 86_400, False)
    shallow = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--bare", "--depth", "3",
                    f"file://{tmp_path / 'repo.git'}", str(shallow)], check=True)
    source = GitSource(str(shallow), ref="main", subdir="docs")
    early = datetime.fromtimestamp(T0, timezone.utc)
    done = export_history(source, early, tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["shallow_history_before_base"] and done.commits == 2
    full = export_history(GitSource(str(tmp_path / "repo.git"), ref="main", subdir="docs"),
                          early, tmp_path / "full")
    assert not full.truncated and full.commits == 5
