"""Every source kind, end to end on real services: index, edit one paragraph (one chunk
re-embedded), delete a doc (its points go), a no-op sync (no content read), remove a shard
(it retires: points deleted, state archived), and search returns what the source holds.
Shard names nest (`reference/spl`).

Kinds: a local folder, a folder on S3 with the state root on S3 too (moto's server on
127.0.0.1), a Parquet table on S3, a PostgreSQL table (a real server), a bare git repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from freshness.pipeline.search import search
from freshness.pipeline.sync import sync
from freshness.sources import FolderSource, GitSource, PostgresSource, Source, TableSource


def paragraph(topic: str, words: list[str]) -> str:
    """~150 word pieces about one topic: two of them never pack into one 254-token chunk."""
    body = " ".join(f"{words[i % len(words)]}" for i in range(95))
    return f"This paragraph is about {topic}. {body}."


P_LIGHT = paragraph("lighthouses", ["keepers", "lamps", "coastal", "beacons", "fog", "ships"])
P_ICE = paragraph("glaciers", ["ice", "crevasses", "moraine", "alpine", "melt", "snowfields"])
P_SAND = paragraph("deserts", ["dunes", "sand", "camels", "oasis", "arid", "mirage"])
P_FIRE = paragraph("volcanoes", ["lava", "magma", "eruption", "ash", "crater", "basalt"])
DOCS = {
    "reference/spl/search.md": f"{P_LIGHT}\n\n{P_ICE}\n\n{P_FIRE}",
    "reference/spl/stats.md": "Statistics commands count events per host and per hour.",
    "reference/cpp/vectors.md": "Vectors grow their capacity geometrically when full.",
    "guides/intro/start.md": "Install the tool, point it at a corpus and run the first sync.",
}
SHARDS = {"reference/spl", "reference/cpp", "guides/intro"}
RACY_S = 1.2


# -- how each kind's corpus is changed ----------------------------------------------------

class Corpus:
    """A kind's documents: write, delete, remove a shard, then `publish()` the change."""

    reads_nothing_on_noop = True

    def write(self, doc_id: str, text: str) -> None: ...
    def delete(self, doc_id: str) -> None: ...
    def remove_shard(self, shard: str) -> None: ...
    def publish(self) -> None: ...
    def source(self) -> Source: ...


class LocalFolder(Corpus):
    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, doc_id, text):
        (self.root / doc_id).parent.mkdir(parents=True, exist_ok=True)
        (self.root / doc_id).write_text(text)

    def delete(self, doc_id):
        (self.root / doc_id).unlink()

    def remove_shard(self, shard):
        shutil.rmtree(self.root / shard)

    def source(self):
        return FolderSource(self.root, shard_depth=2, racy_window_s=RACY_S)


class S3Folder(Corpus):
    def __init__(self, fs: pafs.S3FileSystem, bucket: str) -> None:
        self.fs, self.base = fs, f"{bucket}/corpus"

    def write(self, doc_id, text):
        with self.fs.open_output_stream(f"{self.base}/{doc_id}") as out:
            out.write(text.encode())

    def delete(self, doc_id):
        self.fs.delete_file(f"{self.base}/{doc_id}")

    def remove_shard(self, shard):
        self.fs.delete_dir(f"{self.base}/{shard}")

    def source(self):
        return FolderSource(f"s3://{self.base}", shard_depth=2, racy_window_s=RACY_S)


class S3Table(Corpus):
    reads_nothing_on_noop = False  # DuckDB hashes the Parquet rows it scans

    def __init__(self, fs: pafs.S3FileSystem, bucket: str) -> None:
        self.fs, self.base, self.rows = fs, f"{bucket}/table", {}

    def write(self, doc_id, text):
        self.rows[doc_id] = text

    def delete(self, doc_id):
        del self.rows[doc_id]

    def remove_shard(self, shard):
        self.rows = {d: t for d, t in self.rows.items() if not d.startswith(f"{shard}/")}

    def publish(self):
        table = pa.table({"doc_id": list(self.rows), "content": list(self.rows.values()),
                          "shard": ["/".join(d.split("/")[:2]) for d in self.rows]})
        with self.fs.open_output_stream(f"{self.base}/docs.parquet") as out:
            pq.write_table(table, out)

    def source(self):
        return TableSource.from_parquet(f"s3://{self.base}/")


class PostgresTable(Corpus):
    def __init__(self, dsn: str) -> None:
        import psycopg2

        self.dsn = dsn
        self.con = psycopg2.connect(dsn)
        self.con.autocommit = True
        with self.con.cursor() as cur:
            cur.execute("""CREATE TABLE docs (doc_id text PRIMARY KEY, shard text NOT NULL,
                           content text, updated_at timestamptz NOT NULL DEFAULT now(),
                           metadata jsonb)""")

    def write(self, doc_id, text):
        with self.con.cursor() as cur:
            cur.execute("""INSERT INTO docs VALUES (%s, %s, %s, clock_timestamp(), %s)
                           ON CONFLICT (doc_id) DO UPDATE SET content = excluded.content,
                           updated_at = excluded.updated_at""",
                        (doc_id, "/".join(doc_id.split("/")[:2]), text,
                         '{"owner": "docs-team"}'))

    def delete(self, doc_id):
        with self.con.cursor() as cur:
            cur.execute("DELETE FROM docs WHERE doc_id = %s", (doc_id,))

    def remove_shard(self, shard):
        with self.con.cursor() as cur:
            cur.execute("DELETE FROM docs WHERE shard = %s", (shard,))

    def source(self):
        return PostgresSource(self.dsn, "docs", racy_window_s=RACY_S)


class BareGit(Corpus):
    def __init__(self, tmp: Path) -> None:
        self.bare, self.work = tmp / "docs.git", tmp / "work"
        self._git("init", "-q", "--bare", "-b", "main", str(self.bare), cwd=tmp)
        self._git("clone", "-q", str(self.bare), str(self.work), cwd=tmp)
        self._git("checkout", "-q", "-b", "main")
        self.folder = LocalFolder(self.work / "docs")
        (self.work / "README.md").write_text("Not part of the corpus: outside --subdir.")

    def _git(self, *args: str, cwd: Path | None = None) -> str:
        env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
        return subprocess.run(["git", *args], cwd=cwd or self.work, env=env, check=True,
                              capture_output=True, text=True).stdout

    def write(self, doc_id, text):
        self.folder.write(doc_id, text)

    def delete(self, doc_id):
        self.folder.delete(doc_id)

    def remove_shard(self, shard):
        self.folder.remove_shard(shard)

    def publish(self):
        self._git("add", "-A")
        self._git("commit", "-q", "-m", "docs")
        self._git("push", "-q", "origin", "main")

    def head(self) -> str:
        return self._git("rev-parse", "HEAD").strip()

    def source(self):
        return GitSource(self.bare, ref="main", subdir="docs", shard_depth=2)


# -- the scenario --------------------------------------------------------------------------

def totals(result) -> dict:
    assert result.ok, result.summary()["failed_shards"]
    return result.totals


def hashed(result) -> int:
    return sum(r.notes.get("docs_hashed", 0) for r in result.shards)


def top_doc(rt, query: str, shard: str | None = None) -> dict:
    hits = search(rt, query, limit=1, shards=[shard] if shard else None).hits
    return hits[0].payload if hits else {}


def run_lifecycle(corpus: Corpus, make_runtime, **settings):
    for doc_id, text in DOCS.items():
        corpus.write(doc_id, text)
    corpus.publish()
    rt = make_runtime(source=corpus.source(), **settings)

    first = totals(sync(rt))  # index everything
    assert set(rt.shard_state().shards()) == SHARDS
    assert first["docs_total"] == 4 and first["chunks_total"] >= 6
    assert top_doc(rt, "lighthouse keepers and coastal beacons")["doc_id"] == \
        "reference/spl/search.md"
    assert top_doc(rt, "lighthouse keepers")["shard"] == "reference/spl"  # verbatim

    corpus.write("reference/spl/search.md", f"{P_LIGHT}\n\n{P_SAND}\n\n{P_FIRE}")
    corpus.publish()
    edited = totals(sync(rt))  # one paragraph edited: exactly one chunk re-embedded
    assert edited["chunks_embedded"] == 1 and edited["docs_modified"] == 1
    hit = top_doc(rt, "camels crossing sand dunes to an oasis")
    assert hit["doc_id"] == "reference/spl/search.md" and "deserts" in hit["text"]

    corpus.delete("reference/spl/stats.md")
    corpus.publish()
    deleted = totals(sync(rt))  # a deleted doc's points go
    assert deleted["docs_deleted"] == 1 and deleted["chunks_embedded"] == 0
    manifest = rt.shard_state().load("reference/spl")
    assert "reference/spl/stats.md" not in manifest.chunks["doc_id"].to_pylist()
    assert rt.index.shard_point_ids(rt.collection, "reference/spl") == \
        set(manifest.chunks["point_id"].to_pylist())
    assert top_doc(rt, "statistics commands count events per host").get("doc_id") != \
        "reference/spl/stats.md"

    time.sleep(RACY_S + 0.3)  # past the racy window: hashes become trusted
    totals(sync(rt))
    noop = sync(rt)
    assert totals(noop)["chunks_embedded"] == 0
    if corpus.reads_nothing_on_noop:
        assert hashed(noop) == 0  # a no-op sync reads no document content

    corpus.remove_shard("reference/cpp")
    corpus.publish()
    removed = sync(rt)
    assert removed.ok, (removed.summary()["failed_shards"], removed.summary().get("errors"))
    assert "reference/cpp" not in rt.source.discover().shards
    assert removed.summary()["retired_shards"] == ["reference/cpp"]

    for doc_id, text in {**DOCS, "reference/spl/search.md": P_SAND}.items():  # what it holds
        if doc_id.startswith("reference/cpp") or doc_id.endswith("stats.md"):
            continue
        assert top_doc(rt, text[:200])["doc_id"] == doc_id
    return rt  # each test ends with assert_retired(rt, "reference/cpp")


def assert_retired(rt, shard: str) -> None:
    """A shard gone from the source is retired: no points left, its state archived."""
    assert rt.index.shard_point_ids(rt.collection, shard) == set()
    assert shard not in rt.shard_state().shards()


# -- one test per kind ---------------------------------------------------------------------

def test_local_folder(tmp_path, make_runtime):
    corpus = LocalFolder(tmp_path / "corpus")
    rt = run_lifecycle(corpus, make_runtime)
    assert_retired(rt, "reference/cpp")
    fresh = sync(make_runtime(source=corpus.source()))  # a new process: the cache is in state
    assert totals(fresh)["chunks_embedded"] == 0 and hashed(fresh) == 0


def test_folder_and_state_root_on_s3(s3, make_runtime):
    fs, bucket = s3
    rt = run_lifecycle(S3Folder(fs, bucket), make_runtime,
                       state_root=f"s3://{bucket}-state/freshness")
    listed = fs.get_file_info(pafs.FileSelector(f"{bucket}-state/freshness", recursive=True))
    names = {i.path.rsplit("/", 1)[-1] for i in listed}
    assert {"manifest.json", "listing_cache.parquet"} <= names  # the state lives in S3
    assert any("reference%2Fspl" in i.path for i in listed)  # nested name, one segment
    assert rt.store.uri.startswith("s3://")
    assert_retired(rt, "reference/cpp")


def test_parquet_table_on_s3(s3, make_runtime):
    rt = run_lifecycle(S3Table(*s3), make_runtime)
    assert_retired(rt, "reference/cpp")


@pytest.mark.postgres
def test_postgres_table(pg_dsn, make_runtime):
    rt = run_lifecycle(PostgresTable(pg_dsn), make_runtime)
    assert top_doc(rt, "lighthouse keepers")["source"] == {"owner": "docs-team"}
    assert_retired(rt, "reference/cpp")


def test_bare_git_repository(tmp_path, make_runtime):
    corpus = BareGit(tmp_path)
    rt = run_lifecycle(corpus, make_runtime)
    hit = top_doc(rt, "camels crossing sand dunes to an oasis")
    assert hit["source"]["commit"] and len(hit["source"]["commit"]) == 40  # lineage: commit
    assert "default" not in rt.source.discover().shards  # README.md is outside --subdir
    clone = GitSource(corpus.work, ref="main", subdir="docs", shard_depth=2)  # a working clone
    (corpus.work / "docs" / "guides" / "intro" / "uncommitted.md").write_text("Not committed.")
    assert clone.discover().shards == rt.source.discover().shards
    assert "guides/intro/uncommitted.md" not in clone.listing("guides/intro").docs["doc_id"] \
        .to_pylist()  # only committed content counts
    assert_retired(rt, "reference/cpp")
