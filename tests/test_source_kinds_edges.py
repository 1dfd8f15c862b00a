"""Source kinds beyond the lifecycle: CLI flags build a git source with nested shards, secrets
(a DSN, credentials in an object-store URI) never show, and PostgreSQL's bad rows are named skips
while its change tokens see edits."""

from __future__ import annotations

import os

import pytest

from freshness.sources import FolderSource, PostgresSource
from tests.test_source_kinds import DOCS, BareGit


def test_cli_flags_build_a_git_source_with_nested_shards(tmp_path, capsys, monkeypatch):
    from freshness.cli.main import main as cli

    corpus = BareGit(tmp_path)
    for doc_id, text in DOCS.items():
        corpus.write(doc_id, text)
    corpus.publish()
    monkeypatch.setenv("FRESHNESS_DEVICE", "cpu")
    where = ["--source", "git", "--path", str(corpus.bare), "--ref", "main", "--subdir", "docs",
             "--shard-depth", "2", "--exclude", "*/cpp/*", "--state-root",
             str(tmp_path / "state"), "--index-path", str(tmp_path / "qdrant")]
    assert cli(["detect", *where, "--json"]) == 0
    pending = capsys.readouterr().out
    assert "reference/spl" in pending and "reference/cpp" not in pending


def test_the_dsn_never_shows_in_errors_or_settings():
    from freshness.config import Settings
    from freshness.errors import SourceError

    secret = "hunter2-not-logged"
    with pytest.raises(SourceError) as caught:
        PostgresSource(f"postgresql://app:{secret}@127.0.0.1:1/kb", "docs")
    assert secret not in str(caught.value) and "FRESHNESS_SOURCE_DSN" in str(caught.value)
    settings = Settings(source_kind="postgres", source_dsn=f"postgresql://a:{secret}@h/db")
    assert secret not in repr(settings)


def test_credentials_in_an_object_store_uri_never_show(s3):
    fs, bucket = s3
    with fs.open_output_stream(f"{bucket}/corpus/a/doc.md") as out:
        out.write(b"hello")
    uri = f"s3://testing:testing@{bucket}/corpus?endpoint_override=" \
          f"{os.environ['AWS_ENDPOINT_URL']}"
    source = FolderSource(uri)
    assert "testing:testing" not in source.name and source.discover().shards == ["a"]


@pytest.mark.postgres
def test_postgres_bad_rows_are_named_skips_and_tokens_see_edits(pg_dsn):
    import psycopg2

    con = psycopg2.connect(pg_dsn)
    con.autocommit = True
    cur = con.cursor()
    cur.execute("CREATE TABLE t (doc_id text, shard text, content text)")  # no updated_at
    cur.executemany("INSERT INTO t VALUES (%s, %s, %s)", [
        ("a", "s", "alpha"), ("dup", "s", "one"), ("dup", "s", "two"), ("", "s", "x"),
        ("e", "s", " \n "), ("big", "s", "x" * 50), ("n", "tab\tname", "x"),
        ('we"ird,\nid', "s", "odd id")])  # quotes, comma, newline: survive the CSV COPY
    source = PostgresSource(pg_dsn, "t", max_doc_bytes=20)
    discovery = source.discover()
    assert discovery.shards == ["s"] and "control character" in discovery.skips[0].reason
    listing = source.listing("s")
    assert listing.docs["doc_id"].to_pylist() == ["a", 'we"ird,\nid']
    reasons = {s.doc_id: s.reason for s in listing.skips}
    assert "duplicate doc_id (2 rows)" in reasons["dup"] and "no doc_id" in reasons[""]
    assert "empty" in reasons["e"] and "FRESHNESS_MAX_DOC_BYTES" in reasons["big"]
    assert listing.notes["missing_updated_at_set_to_scan_time"] == 2
    assert source.read("s", ["a", "dup"])["doc_id"].to_pylist() == ["a"]
    before = source.change_tokens()
    cur.execute("UPDATE t SET content = 'alpha, edited' WHERE doc_id = 'a'")
    assert source.change_tokens()["s"] != before["s"]  # no updated_at: content is hashed
    assert source.listing("s").notes["docs_hashed"] == 4  # and every listing re-hashes
