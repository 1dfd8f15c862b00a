"""`freshness search` says when there is nothing to search, without loading the model."""

import time

from freshness.cli.main import main


def test_search_on_an_empty_index_says_so_quickly(tmp_path, capsys):
    started = time.monotonic()
    code = main(["search", "anything", "--path", str(tmp_path / "corpus"),
                 "--state-root", str(tmp_path / "state"), "--index-path",
                 str(tmp_path / "qdrant"), "--device", "cpu"])
    took = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 2 and "is empty" in err and "run `freshness sync` first" in err
    assert took < 5  # the model is not loaded for nothing (~10 s on CPU)


def test_search_with_no_hits_in_a_shard_says_so(corpus, tmp_path, capsys):
    where = ["--path", str(corpus), "--state-root", str(tmp_path / "state"),
             "--index-path", str(tmp_path / "qdrant"), "--device", "cpu"]
    assert main(["sync", *where]) == 0
    capsys.readouterr()
    assert main(["search", "apples", "--shard", "nosuchshard", *where]) == 0
    assert "no results" in capsys.readouterr().out
