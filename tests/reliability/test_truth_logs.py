"""Issue 13, class 8: one hostile request-log record or file never kills the histogram.

Each bad record is quarantined with its reason and the good records around it are kept; only
regular files are opened (a FIFO would block forever); gzip is recognised by its magic bytes.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
from reliability_helpers import no_hang  # noqa: F401 (autouse: a FIFO fails, never hangs)

from freshness.recency.logs import read_request_logs

GOOD = {"request_id": "ok", "ts": "2026-01-01T12:00:00Z",
        "retrieved": [{"doc_id": "a.md", "chunk_index": 0, "rank": 1, "score": 0.5}]}


def _with(**change) -> dict:
    record = json.loads(json.dumps(GOOD))
    item = record["retrieved"][0]
    for key, value in change.items():
        (record if key in ("ts", "request_id") else item)[key] = value
    return record


HOSTILE = {
    "nan_ts": '{"request_id": "x", "ts": NaN, "retrieved": []}',
    "inf_ts": '{"request_id": "x", "ts": Infinity, "retrieved": []}',
    "huge_ts": json.dumps(_with(ts=1e300)),
    "rank_2_31": json.dumps(_with(rank=2**31)),
    "negative_rank": json.dumps(_with(rank=-(2**40))),
    "chunk_2_31": json.dumps(_with(chunk_index=2**31)),
    "score_400_digits": json.dumps(_with(request_id="x")).replace('"score": 0.5',
                                                                  '"score": ' + "9" * 400),
    "nan_score": json.dumps(_with(request_id="x")).replace('"score": 0.5', '"score": NaN'),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_record_is_quarantined_and_the_rest_kept(tmp_path, name):
    log = tmp_path / "requests.jsonl"
    log.write_text("\n".join([json.dumps(GOOD), HOSTILE[name], json.dumps(GOOD)]) + "\n")
    ingest = read_request_logs(log, quarantine=tmp_path / "quarantine.jsonl")
    assert ingest.retrievals.num_rows == 2
    assert ingest.counts["quarantined"] == 1
    (line,) = (tmp_path / "quarantine.jsonl").read_text().splitlines()
    assert json.loads(line)["line"] == 2 and json.loads(line)["detail"]


def test_folder_and_fifo_named_jsonl_are_skipped_not_opened(tmp_path):
    logs = tmp_path / "logs"
    (logs / "trap.jsonl").mkdir(parents=True)
    os.mkfifo(logs / "pipe.jsonl")
    (logs / "real.jsonl").write_text(json.dumps(GOOD) + "\n")
    ingest = read_request_logs(logs)
    assert ingest.retrievals.num_rows == 1
    assert ingest.counts["files_skipped_not_regular"] == 1  # the FIFO (the folder is a folder)
    # named directly, too
    ingest = read_request_logs([logs / "real.jsonl", logs / "pipe.jsonl"])
    assert ingest.retrievals.num_rows == 1 and ingest.counts["files_skipped_not_regular"] == 1


def test_gzip_is_read_by_magic_bytes_whatever_the_name(tmp_path):
    (tmp_path / "zipped.jsonl").write_bytes(gzip.compress((json.dumps(GOOD) + "\n").encode()))
    (tmp_path / "plain.jsonl.gz").write_text(json.dumps(GOOD) + "\n")
    (tmp_path / "rotated.jsonl.1.gz").write_bytes(gzip.compress(
        (json.dumps(GOOD) + "\n").encode()))
    ingest = read_request_logs(sorted(Path(tmp_path).iterdir()))
    assert ingest.retrievals.num_rows == 3 and ingest.counts["quarantined"] == 0
