"""Request-log ingest: native JSONL/Parquet, OpenInference / GenAI spans, malformed input."""

import json
from collections import Counter
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from freshness.demo.logs import (
    requests_from_states,
    requests_from_versions,
    write_jsonl,
    zipf_weights,
)
from freshness.errors import SourceError
from freshness.recency.logs import MAX_LINE_BYTES, RETRIEVALS_SCHEMA, parse_ts, read_request_logs
from freshness.recency.report import VERSIONS_SCHEMA, recency_report

T = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
POINT = "6f1c0c2e-9a51-4d38-9d0e-5b0b6a7f3e21"


def request(rid="r1", ts="2026-01-01T12:00:00Z", **extra):
    return {"request_id": rid, "ts": ts, "retrieved": [{"doc_id": "a.md", "chunk_index": 0}],
            **extra}


def write_lines(path, *lines):
    path.write_text("".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n"
                            for ln in lines))
    return path


def attr(key, value):
    kind = {str: "stringValue", float: "doubleValue", int: "intValue"}[type(value)]
    return {"key": key, "value": {kind: str(value) if kind == "intValue" else value}}


def otlp(*spans):
    return {"resourceSpans": [{"resource": {}, "scopeSpans": [{"spans": list(spans)}]}]}


def test_native_jsonl_rows_are_exact(tmp_path):
    path = write_lines(tmp_path / "logs.jsonl", {
        "request_id": "r1", "ts": "2026-01-01T13:00:00+01:00", "route": "chat",
        "user_segment": "pro", "query": "how?", "retrieved": [
            {"doc_id": "a.md", "chunk_index": 2, "score": 0.9},
            {"point_id": POINT, "rank": 7, "shard": "alpha"}]}, "")
    ingest = read_request_logs(path)
    assert ingest.retrievals.schema == RETRIEVALS_SCHEMA
    assert ingest.retrievals.to_pylist() == [
        {"request_id": "r1", "ts": T, "route": "chat", "user_segment": "pro", "shard": None,
         "doc_id": "a.md", "point_id": None, "chunk_index": 2, "rank": 1, "score": 0.9},
        {"request_id": "r1", "ts": T, "route": "chat", "user_segment": "pro", "shard": "alpha",
         "doc_id": None, "point_id": POINT, "chunk_index": None, "rank": 7, "score": None}]
    assert ingest.counts["requests"] == 1 and ingest.quarantine_path is None


def test_malformed_catalogue_is_quarantined_with_reasons_and_the_run_goes_on(tmp_path):
    huge = json.dumps(request("huge", query="x" * (MAX_LINE_BYTES + 10)))
    path = write_lines(
        tmp_path / "logs.jsonl",
        request("ok1"),
        '{"request_id": "cut", "ts": "2026-01-01T12:00:00Z", "retrieved": [{"doc_id"',  # 2
        request("t1", ts=[2026]),                                                       # 3
        {**request("t2"), "retrieved": [{"doc_id": "a.md", "chunk_index": "0"}]},       # 4
        {**request("t3"), "retrieved": "a.md"},                                         # 5
        {**request("t4"), "retrieved": [{"doc_id": "a.md", "rank": True}]},             # 6
        {"ts": "2026-01-01T12:00:00Z", "retrieved": [{"doc_id": "a.md"}]},              # 7
        {"request_id": "m2", "retrieved": [{"doc_id": "a.md"}]},                        # 8
        {"request_id": "m3", "ts": "2026-01-01T12:00:00Z"},                             # 9
        {**request("m4"), "retrieved": [{"chunk_index": 0}]},                           # 10
        request("bad-ts", ts="yesterday-ish"),                                          # 11
        huge,                                                                           # 12
        "[1, 2]",                                                                       # 13
        {"hello": "world"},                                                             # 14
        request("ok2"))
    quarantine = tmp_path / "q" / "bad.jsonl"
    ingest = read_request_logs(path, quarantine)
    assert ingest.retrievals["request_id"].to_pylist() == ["ok1", "ok2"]
    bad = [json.loads(line) for line in quarantine.read_text().splitlines()]
    assert [(b["line"], b["reason"]) for b in bad] == [
        (2, "invalid_json"), (3, "wrong_type"), (4, "wrong_type"), (5, "wrong_type"),
        (6, "wrong_type"), (7, "missing_field"), (8, "missing_field"), (9, "missing_field"),
        (10, "missing_field"), (11, "bad_timestamp"), (12, "line_too_long"),
        (13, "not_an_object"), (14, "unrecognised")]
    assert ingest.counts["quarantined"] == 13 and ingest.counts["lines"] == 15
    assert ingest.counts["quarantined:missing_field"] == 4
    assert "retrieved[0].chunk_index" in bad[2]["detail"] and "integer" in bad[2]["detail"]
    assert bad[10]["bytes"] <= 512 and str(len(huge) + 1) in bad[10]["detail"]
    assert ingest.quarantine_path == str(quarantine)


def test_timestamps_in_iso_and_epoch_units_become_utc():
    expected = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
    for value in ("2026-01-01T12:00:00Z", "2026-01-01 12:00:00", "2026-01-01T07:00:00-05:00",
                  1767268800, 1767268800.0, 1767268800000, "1767268800000000",
                  1767268800000000000):
        assert parse_ts(value) == expected


def test_openinference_otlp_spans_flattened_and_json_metadata(tmp_path):
    retriever = {"traceId": "trace-1", "startTimeUnixNano": str(int(T.timestamp() * 1e9)),
                 "attributes": [
                     attr("openinference.span.kind", "RETRIEVER"),
                     attr("metadata", json.dumps({"route": "chat"})),
                     attr("retrieval.documents.0.document.id", POINT),
                     attr("retrieval.documents.0.document.score", 0.8),
                     attr("retrieval.documents.0.document.metadata",
                          json.dumps({"doc_id": "a.md", "chunk_index": 1, "shard": "alpha"})),
                     attr("retrieval.documents.1.document.id", "b.md"),
                     attr("retrieval.documents.1.document.metadata.chunk_index", 3)]}
    llm = {"traceId": "trace-1", "attributes": [attr("openinference.span.kind", "LLM")]}
    broken = {"traceId": "trace-2", "startTimeUnixNano": "1", "attributes": [
        attr("openinference.span.kind", "RETRIEVER"),
        attr("retrieval.documents.0.document.metadata", "{not json")]}
    ingest = read_request_logs(write_lines(tmp_path / "otlp.jsonl",
                                           otlp(retriever, llm, broken)))
    rows = ingest.retrievals.to_pylist()
    assert [(r["doc_id"], r["point_id"], r["chunk_index"], r["rank"], r["shard"], r["route"])
            for r in rows] == [("a.md", POINT, 1, 1, "alpha", "chat"),
                               ("b.md", None, 3, 2, None, "chat")]
    assert rows[0]["ts"] == T and rows[0]["request_id"] == "trace-1"
    assert ingest.counts["spans_skipped"] == 1
    assert ingest.counts["quarantined:bad_metadata"] == 1


def test_genai_retrieval_spans_as_json_string_and_structured(tmp_path):
    as_string = {"traceId": "g1", "startTimeUnixNano": "1767268800000000000", "attributes": [
        attr("gen_ai.operation.name", "retrieval"),
        attr("gen_ai.retrieval.documents", json.dumps([{"id": "a.md", "score": 0.9},
                                                       {"id": POINT, "score": 0.7}]))]}
    structured = {"traceId": "g2", "startTimeUnixNano": "1767268800000000000", "attributes": [
        attr("gen_ai.operation.name", "retrieval"),
        {"key": "gen_ai.retrieval.documents", "value": {"arrayValue": {"values": [
            {"kvlistValue": {"values": [attr("id", "c.md"), attr("score", 0.5)]}}]}}}]}
    path = tmp_path / "export.json"  # one pretty-printed JSON document
    path.write_text(json.dumps(otlp(as_string, structured), indent=2))
    rows = read_request_logs(path).retrievals.to_pylist()
    assert [(r["request_id"], r["doc_id"], r["point_id"], r["score"]) for r in rows] == [
        ("g1", "a.md", None, 0.9), ("g1", None, POINT, 0.7), ("g2", "c.md", None, 0.5)]


def test_phoenix_spans_as_json_and_as_a_dataframe_parquet(tmp_path):
    span = {"name": "retrieve", "context": {"trace_id": "ph1", "span_id": "s1"},
            "span_kind": "RETRIEVER", "start_time": "2026-01-01T12:00:00+00:00",
            "attributes": {"retrieval": {"documents": [
                {"document": {"id": "a.md", "score": 0.4, "metadata": {"chunk_index": 2}}}]}}}
    from_json = read_request_logs(write_lines(tmp_path / "spans.jsonl", span))
    frame = pa.table({"context.trace_id": ["ph2"], "span_kind": ["RETRIEVER"],
                      "start_time": pa.array([T], pa.timestamp("us", "UTC")),
                      "attributes.retrieval.documents": [[{
                          "document.id": "b.md", "document.score": 0.3,
                          "document.metadata": json.dumps({"chunk_index": 4})}]]})
    pq.write_table(frame, tmp_path / "spans.parquet")
    from_parquet = read_request_logs(tmp_path / "spans.parquet")
    assert [(r["request_id"], r["doc_id"], r["chunk_index"], r["ts"])
            for r in from_json.retrievals.to_pylist() + from_parquet.retrievals.to_pylist()] == \
        [("ph1", "a.md", 2, T), ("ph2", "b.md", 4, T)]


def test_native_parquet_nested_and_flat_with_bad_rows_quarantined(tmp_path):
    item = pa.struct([("doc_id", pa.string()), ("point_id", pa.string()),
                      ("chunk_index", pa.int32()), ("score", pa.float64())])
    pq.write_table(pa.table({
        "request_id": ["n1", None], "ts": pa.array([T, T], pa.timestamp("us", "UTC")),
        "route": ["chat", "chat"],
        "retrieved": pa.array([[{"doc_id": "a.md", "point_id": None, "chunk_index": 0,
                                 "score": 0.5}, {"doc_id": None, "point_id": POINT,
                                                 "chunk_index": None, "score": 0.4}],
                               [{"doc_id": "a.md", "point_id": None, "chunk_index": 0,
                                 "score": 0.1}]], pa.list_(item))}), tmp_path / "nested.parquet")
    pq.write_table(pa.table({"request_id": ["f1"], "ts": ["2026-01-01T12:00:00Z"],
                             "doc_id": ["c.md"], "chunk_index": [5], "rank": [3]}),
                   tmp_path / "flat.parquet")
    ingest = read_request_logs(tmp_path, tmp_path / "out" / "q.jsonl")
    rows = sorted(ingest.retrievals.to_pylist(), key=lambda r: (r["request_id"], r["rank"]))
    assert [(r["request_id"], r["doc_id"], r["point_id"], r["rank"], r["ts"]) for r in rows] == [
        ("f1", "c.md", None, 3, T), ("n1", "a.md", None, 1, T), ("n1", None, POINT, 2, T)]
    assert ingest.counts["files"] == 2 and ingest.counts["quarantined:missing_field"] == 1


def test_missing_logs_name_the_path_and_the_fix(tmp_path):
    with pytest.raises(SourceError, match=r"nowhere.*\.jsonl/\.parquet"):
        read_request_logs(tmp_path / "nowhere")


def test_unknown_ids_and_future_timestamps_pass_ingest_and_are_counted_by_recency(tmp_path):
    versions = pa.Table.from_pylist([{
        "shard": "alpha", "doc_id": "a.md", "doc_hash": "h", "chunk_index": 0,
        "content_hash": "c", "point_id": POINT, "n_tokens": 3,
        "source_updated_at": T - timedelta(days=2), "embedded_at": T - timedelta(days=1)}],
        VERSIONS_SCHEMA)
    path = write_lines(tmp_path / "logs.jsonl", request("known"),
                       {**request("ghost"), "retrieved": [{"doc_id": "ghost.md"}]},
                       request("later", ts="2027-06-01T00:00:00Z"))
    ingest = read_request_logs(path)
    assert ingest.counts["quarantined"] == 0 and ingest.retrievals.num_rows == 3
    report = recency_report(ingest.retrievals, versions, now=T + timedelta(hours=1))
    assert (report.counts["served"], report.counts["unknown"], report.counts["future"]) == \
        (1, 1, 1)
    assert report.scope("all")[0]["content_age_p50_seconds"] == \
        pytest.approx(2 * 86400, rel=0.025)


def test_demo_logs_follow_zipf_over_live_versions_and_resolve(tmp_path):
    rows = []
    for d in range(20):
        born = T - timedelta(days=3)
        rows.append({"shard": "s", "doc_id": f"d{d:02}", "doc_hash": "h", "chunk_index": 0,
                     "content_hash": f"old{d}", "point_id": f"old-{d}", "n_tokens": 3,
                     "source_updated_at": born, "embedded_at": born,
                     "superseded_at": T if d < 5 else None, "retired_at": T if d < 5 else None})
        if d < 5:  # edited: a new version from T on
            rows.append({**rows[-1], "point_id": f"new-{d}", "content_hash": f"new{d}",
                         "source_updated_at": T, "embedded_at": T, "superseded_at": None,
                         "retired_at": None})
    versions = pa.Table.from_pylist(rows, VERSIONS_SCHEMA)
    requests = requests_from_versions(versions, T - timedelta(days=1), T + timedelta(days=1),
                                      400, top_k=1, seed=3)
    path = tmp_path / "demo.jsonl"
    assert write_jsonl(requests, path) == 400
    ingest = read_request_logs(path)
    assert ingest.counts["quarantined"] == 0
    report = recency_report(ingest.retrievals, versions, now=T + timedelta(days=2))
    assert report.counts["served"] == 400 == report.counts["retrievals"]
    top = Counter(ingest.retrievals["doc_id"].to_pylist()).most_common()
    assert top[0][1] > 400 * zipf_weights(20)[0] * 0.6 > top[-1][1]
    states = [(T, {"a.md": 1, "b.md": 1}), (T + timedelta(hours=1), {"b.md": 2})]
    later = [r for r in requests_from_states(states, T + timedelta(hours=2), 50, seed=1)
             if r["ts"] >= (T + timedelta(hours=1)).isoformat()]
    assert later and all(i["doc_id"] == "b.md" and i["version"] == "2"
                         for r in later for i in r["retrieved"])
