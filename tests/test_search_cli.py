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

