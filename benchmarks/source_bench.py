"""Listing cost of the sources that keep a listing cache: git, folder, PostgreSQL.

Each source lists a corpus twice in one process: cold (no cache: every doc is read and hashed)
and warm (a no-op: the cache holds every doc's token), then once after a small change. The
figures are medians of `reps` warm runs with the cold run as the same-process baseline, plus
how much content each run read (blobs / files / rows hashed) — the claim is that a no-op reads
none and a small change reads only what changed.

- git: a repository of N docs in 20 shards, made with `git fast-import`; a commit touching 10
  docs is listed from the tree diff;
- folder: N files in 20 shard folders on local disk (stat per file, no reads when warm);
- postgres: N rows (`doc_id, shard, content ~600 chars, updated_at`), 20 shards, with an index
  on `(shard, doc_id) INCLUDE (updated_at)`; `change_tokens()` over the whole table, a cold and
  a warm listing of every shard, and one after 0.1 % of rows were updated. Needs a server:
  FRESHNESS_BENCH_PG_DSN, else FRESHNESS_TEST_PG_URL, else a throwaway cluster from
  deploy/ci/start_postgres.sh (skipped with a note when none can be had).

    python -m benchmarks.source_bench [--git N] [--folder N] [--pg N]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa

from benchmarks.common import REPO, Context, Figure, median
from freshness.sources import FolderSource, GitSource, PostgresSource

SHARDS = 20


class MemoryCache:
    """A ListingCache in memory (the state-backed one writes Parquet files; same contract)."""

    def __init__(self) -> None:
        self.tables: dict[tuple[str, str], pa.Table] = {}

    def load(self, source: str, shard: str) -> pa.Table | None:
        return self.tables.get((source, shard))

    def save(self, source: str, shard: str, table: pa.Table) -> None:
        self.tables[(source, shard)] = table


def _doc(i: int, rev: int = 0) -> str:
    words = " ".join(f"w{(i * 7 + k) % 997}" for k in range(80))
    return f"# Doc {i} (rev {rev})\n\n{words}\n"


def _list_all(source, shards: list[str]) -> tuple[float, Counter]:
    source.refresh()
    started = time.perf_counter()
    notes: Counter = Counter()
    for shard in shards:
        notes.update(source.listing(shard).notes)
    return time.perf_counter() - started, notes


def _warm_runs(source, shards, reps) -> tuple[list[float], Counter]:
    times, notes = [], Counter()
    for _ in range(reps):
        seconds, n = _list_all(source, shards)
        times.append(seconds)
        notes.update(n)
    return times, notes


# -- git -----------------------------------------------------------------------------------

def make_git_repo(folder: Path, docs: int) -> Path:
    """A repository with `docs` markdown files in SHARDS folders (git fast-import)."""
    repo = folder / "repo.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(repo)], check=True)
    parts = ["commit refs/heads/main", "committer b <b@example.com> 1700000000 +0000",
             "data 4", "init"]
    for i in range(docs):
        body = _doc(i).encode()
        parts.append(f"M 100644 inline shard{i % SHARDS:02d}/doc{i:06d}.md\ndata {len(body)}")
        parts.append(body.decode())
    stream = "\n".join(parts) + "\n"
    subprocess.run(["git", "fast-import", "--quiet"], cwd=repo, input=stream.encode(),
                   check=True)
    return repo


def commit_edits(repo: Path, paths: list[tuple[str, str]]) -> None:
    parts = ["commit refs/heads/main", "committer b <b@example.com> 1700000100 +0000",
             "data 4", "edit", "from refs/heads/main^0"]
    for path, text in paths:
        body = text.encode()
        parts += [f"M 100644 inline {path}\ndata {len(body)}", text]
    subprocess.run(["git", "fast-import", "--quiet"], cwd=repo,
                   input=("\n".join(parts) + "\n").encode(), check=True)


def bench_git(folder: Path, docs: int, reps: int) -> tuple[list[Figure], dict]:
    repo = make_git_repo(folder, docs)
    source = GitSource(str(repo), ref="main")
    source.use_listing_cache(MemoryCache())
    shards = source.discover().shards
    cold, cold_notes = _list_all(source, shards)
    cold_blobs = source.notes["blobs_read"]
    warm, warm_notes = _warm_runs(source, shards, reps)
    warm_blobs = source.notes["blobs_read"] - cold_blobs
    tokens_s = median([_timed_tokens(source) for _ in range(reps)])
    edits = [(f"shard{i % SHARDS:02d}/doc{i:06d}.md", _doc(i, 1)) for i in range(0, 10 * 37, 37)]
    commit_edits(repo, edits)
    before = source.notes["blobs_read"]
    changed, changed_notes = _list_all(source, shards)
    figures = [
        Figure("sources", f"git no-op listing, {docs} docs", median(warm), "s", reps,
               baseline=round(cold, 4), ratio=round(median(warm) / cold, 4),
               target="reads no blob content", met=warm_blobs == 0,
               note=f"blobs read: no-op {warm_blobs}, cold {cold_blobs}"),
        Figure("sources", f"git listing after a commit touching 10 of {docs} docs", changed,
               "s", 1, baseline=round(cold, 4), ratio=round(changed / cold, 4),
               target="reads only the 10 changed blobs",
               met=source.notes["blobs_read"] - before == 10,
               note=f"blobs read {source.notes['blobs_read'] - before}; tree diff"),
        Figure("sources", f"git change_tokens, {docs} docs", tokens_s, "s", reps),
    ]
    details = {"docs": docs, "cold_s": round(cold, 3), "warm_s": [round(t, 4) for t in warm],
               "cold_blobs_read": cold_blobs, "noop_blobs_read": warm_blobs,
               "noop_docs_hashed": warm_notes.get("docs_hashed", 0),
               "changed_docs_hashed": changed_notes.get("docs_hashed", 0),
               "cold_docs_hashed": cold_notes.get("docs_hashed", 0)}
    return figures, details


def _timed_tokens(source) -> float:
    started = time.perf_counter()
    source.change_tokens()
    return time.perf_counter() - started


# -- folder --------------------------------------------------------------------------------

def bench_folder(folder: Path, docs: int, reps: int) -> tuple[list[Figure], dict]:
    root = folder / "corpus"
    for i in range(docs):
        path = root / f"shard{i % SHARDS:02d}" / f"doc{i:06d}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_doc(i))
    old = time.time() - 3600  # past the racy window, as files are between real edits
    for path in root.rglob("*.md"):
        os.utime(path, (old, old))
    source = FolderSource(root)
    source.use_listing_cache(MemoryCache())
    shards = source.discover().shards
    cold, _ = _list_all(source, shards)
    warm, notes = _warm_runs(source, shards, reps)
    figures = [Figure("sources", f"folder no-op listing, {docs} files", median(warm), "s", reps,
                      baseline=round(cold, 4), ratio=round(median(warm) / cold, 4),
                      target="reads no file content", met=notes.get("docs_hashed", 0) == 0,
                      note=f"files hashed in warm runs: {notes.get('docs_hashed', 0)}")]
    return figures, {"docs": docs, "cold_s": round(cold, 3),
                     "warm_s": [round(t, 4) for t in warm]}


# -- postgres ------------------------------------------------------------------------------

def _pg_dsn() -> tuple[str | None, dict | None]:
    dsn = os.environ.get("FRESHNESS_BENCH_PG_DSN") or os.environ.get("FRESHNESS_TEST_PG_URL")
    if dsn:
        return dsn.replace("postgresql+psycopg2://", "postgresql://"), None
    out = subprocess.run([str(REPO / "deploy/ci/start_postgres.sh")], capture_output=True,
                         text=True)
    if out.returncode != 0:
        return None, None
    env = {}
    for line in out.stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = shlex.split(value)[0] if value else ""
    return env["FRESHNESS_TEST_PG_URL"].replace("postgresql+psycopg2://", "postgresql://"), env


def bench_postgres(rows: int, reps: int) -> tuple[list[Figure], dict]:
    import psycopg2

    dsn, started = _pg_dsn()
    if dsn is None:
        return [], {"skipped": "no PostgreSQL server (set FRESHNESS_BENCH_PG_DSN)"}
    try:
        con = psycopg2.connect(dsn)
        con.autocommit = True
        cur = con.cursor()
        t0 = time.perf_counter()
        cur.execute("DROP TABLE IF EXISTS bench_docs")
        cur.execute("""CREATE TABLE bench_docs (doc_id text PRIMARY KEY, shard text NOT NULL,
                       content text NOT NULL, updated_at timestamptz NOT NULL)""")
        cur.execute(f"""INSERT INTO bench_docs
            SELECT 'doc-' || lpad(i::text, 8, '0'), 's' || lpad((i % {SHARDS})::text, 2, '0'),
                   repeat(md5(i::text) || ' ', 18), timestamptz '2026-01-01' + i * interval '1 s'
            FROM generate_series(0, {rows - 1}) i""")
        cur.execute("CREATE INDEX ON bench_docs (shard, doc_id) INCLUDE (updated_at)")
        cur.execute("VACUUM ANALYZE bench_docs")
        load_s = time.perf_counter() - t0
        source = PostgresSource(dsn, "bench_docs")
        source.use_listing_cache(MemoryCache())
        tokens = [_timed_tokens(source) for _ in range(reps)]
        shards = source.discover().shards
        cold, cold_notes = _list_all(source, shards)
        warm, warm_notes = _warm_runs(source, shards, reps)
        cur.execute(f"""UPDATE bench_docs SET content = 'edited ' || content,
                        updated_at = now() WHERE (substr(doc_id, 5)::int % 1000) = 7
                        AND substr(doc_id, 5)::int < {rows}""")
        changed, changed_notes = _list_all(source, shards)
        cur.execute("DROP TABLE bench_docs")
        con.close()
    finally:
        if started:
            subprocess.run([str(REPO / "deploy/ci/stop_postgres.sh"),
                            started["FRESHNESS_TEST_PG_DIR"]], env={**os.environ, **started},
                           capture_output=True)
    figures = [
        Figure("sources", f"postgres change_tokens, {rows} rows", median(tokens), "s", reps,
               note="count, max(updated_at), sum of id/updated_at hashes per shard"),
        Figure("sources", f"postgres no-op listing of all shards, {rows} rows", median(warm), "s",
               reps, baseline=round(cold, 3), ratio=round(median(warm) / cold, 4),
               target="hashes no content", met=warm_notes.get("docs_hashed", 0) == 0,
               note=f"cold listing hashed {cold_notes.get('docs_hashed', 0)} rows in the DB"),
        Figure("sources", f"postgres listing after 0.1 % of {rows} rows changed", changed, "s", 1,
               baseline=round(cold, 3), ratio=round(changed / cold, 4),
               note=f"rows hashed: {changed_notes.get('docs_hashed', 0)}"),
    ]
    return figures, {"rows": rows, "load_s": round(load_s, 1), "cold_s": round(cold, 3),
                     "warm_s": [round(t, 3) for t in warm],
                     "tokens_s": [round(t, 3) for t in tokens]}


def run(ctx: Context) -> dict:
    sizes = (2_000, 2_000, 100_000) if ctx.quick else (10_000, 10_000, 1_000_000)
    return run_sizes(ctx.scratch, *sizes, reps=ctx.reps)


def run_sizes(scratch: Path, git_docs: int, folder_docs: int, pg_rows: int,
              reps: int = 3) -> dict:
    figures, details = [], {}
    for name, bench in (("git", lambda: bench_git(scratch / "git", git_docs, reps)),
                        ("folder", lambda: bench_folder(scratch / "folder", folder_docs, reps)),
                        ("postgres", lambda: bench_postgres(pg_rows, reps))):
        (scratch / name).mkdir(parents=True, exist_ok=True)
        more, info = bench()
        figures += more
        details[name] = info
    return {"figures": figures, "details": details}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.source_bench")
    parser.add_argument("--git", type=int, default=10_000)
    parser.add_argument("--folder", type=int, default=10_000)
    parser.add_argument("--pg", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        out = run_sizes(Path(scratch), args.git, args.folder, args.pg, args.reps)
    for fig in out["figures"]:
        print(json.dumps(fig.as_dict()))
    print(json.dumps(out["details"]))


if __name__ == "__main__":
    main()
