"""Request-log ingest: native JSONL/Parquet and OpenInference / OTel GenAI retriever spans.

Every input becomes rows of one retrievals table; a malformed record is counted and quarantined
with its reason, and the run goes on. Formats: docs/request-logs.md.
"""

from __future__ import annotations

import glob
import gzip
import json
import logging
import math
import os
import re
import stat
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from freshness.errors import SourceError
from freshness.util.timeutil import as_utc

RETRIEVALS_SCHEMA = pa.schema([
    ("request_id", pa.string()), ("ts", pa.timestamp("us", tz="UTC")), ("route", pa.string()),
    ("user_segment", pa.string()), ("shard", pa.string()), ("doc_id", pa.string()),
    ("point_id", pa.string()), ("chunk_index", pa.int32()), ("rank", pa.int32()),
    ("score", pa.float64()),
])
MAX_LINE_BYTES = 1 << 20
INT32_MAX = 2**31 - 1
GZIP_MAGIC = b"\x1f\x8b"
log = logging.getLogger("freshness.recency.logs")
LOG_SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet", ".jsonl.gz", ".ndjson.gz")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_OI_DOC = re.compile(r"^retrieval\.documents\.(\d+)\.document\.(\w+)(?:\.(.+))?$")
_GENAI_DOC = re.compile(r"^gen_ai\.retrieval\.documents\.(\d+)\.(\w+)(?:\.(.+))?$")
_TYPES = {"text": ((str, int), "text"), "int": ((int,), "an integer"),
          "number": ((int, float), "a number")}
Reject = Callable[..., None]  # (source, line, reason, detail, raw record)


class BadRecord(ValueError):
    """A record that cannot become retrievals: args are (reason code, detail naming the fix)."""


@dataclass
class LogIngest:
    """The retrievals read from request logs, with counts and where bad records went."""

    retrievals: pa.Table
    counts: Counter = field(default_factory=Counter)
    quarantine_path: str | None = None


def _regular(path: Path) -> bool:
    """True for a regular file (or a link to one): FIFOs, sockets and devices are never
    opened (a FIFO would block the run), folders are walked, not read."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def log_files(paths: str | Path | Sequence[str | Path],
              skipped: list[Path] | None = None) -> list[Path]:
    """The regular log files that a file, folder or glob (or a list of them) names; other
    entries with a log name go to `skipped`."""
    found: list[Path] = []
    named: list[Path] = []
    for item in [paths] if isinstance(paths, (str, Path)) else paths:
        matches = sorted(glob.glob(str(item))) if glob.has_magic(str(item)) else [str(item)]
        for match in map(Path, matches):
            if match.is_dir():
                named += sorted(p for p in match.rglob("*") if p.name.endswith(LOG_SUFFIXES)
                                and not p.is_dir())
            elif match.exists() or match.is_symlink():
                named.append(match)
    for path in named:
        if _regular(path):
            found.append(path)
        else:
            log.warning("skipping %s: not a regular file (FIFO, socket or device)", path)
            if skipped is not None:
                skipped.append(path)
    if not found:
        raise SourceError(f"no request logs at {paths}: name a .jsonl/.parquet file, folder, glob")
    return found


def read_request_logs(paths: str | Path | Sequence[str | Path],
                      quarantine: str | Path | None = None) -> LogIngest:
    """Read request logs of any supported format into one retrievals table."""
    counts: Counter = Counter()
    out: list[IO[str]] = []

    def bad(source: str, line: int, code: str, detail: str, raw: bytes | str) -> None:
        counts.update(["quarantined", f"quarantined:{code}"])
        if quarantine is not None and not out:
            Path(quarantine).parent.mkdir(parents=True, exist_ok=True)
            out.append(open(quarantine, "a", encoding="utf-8"))
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        for fh in out:
            fh.write(json.dumps({"source": source, "line": line, "reason": code, "detail": detail,
                                 "bytes": len(raw), "record": text[:4096]}) + "\n")

    rows: list[tuple] = []
    not_regular: list[Path] = []
    try:
        files = log_files(paths, not_regular)
        counts["files_skipped_not_regular"] = len(not_regular)
        for path in files:
            counts["files"] += 1
            for number, record, raw in _records(path, counts, bad):
                _read_record(str(path), number, record, raw, rows, counts, bad)
    finally:
        for fh in out:
            fh.close()
    counts["retrievals"] = len(rows)
    columns = list(zip(*rows)) if rows else [[] for _ in RETRIEVALS_SCHEMA]
    table = pa.Table.from_arrays([pa.array(c, f.type) for c, f in zip(columns, RETRIEVALS_SCHEMA)],
                                 schema=RETRIEVALS_SCHEMA)
    return LogIngest(table, counts, str(quarantine) if out else None)


def _records(path: Path, counts: Counter, bad: Reject) -> Iterator[tuple[int, Any, Any]]:
    """(number, parsed record, raw text) of one file; bad lines go to `bad` on the way."""
    if path.suffix == ".parquet":
        parquet = pq.ParquetFile(path)
        spans = any(n == "span_kind" or n[:11] == "attributes." for n in parquet.schema_arrow.names)
        rows = (r for b in parquet.iter_batches(batch_size=10_000) for r in b.to_pylist())
        for number, row in enumerate(rows, start=1):
            if spans:
                row["attributes"] = {k[11:]: v for k, v in row.items() if k[:11] == "attributes."}
            elif "retrieved" not in row and "request_id" in row:  # one retrieval per row
                row["retrieved"] = [{k: row.pop(k, None) for k in (
                    "doc_id", "point_id", "chunk_index", "rank", "score", "shard")}]
            yield number, row, None
        return
    if path.suffix == ".json" and path.stat().st_size <= 64 * MAX_LINE_BYTES:
        with suppress(ValueError):  # one JSON document: an OTLP export or a list of records
            whole = json.loads(path.read_bytes())
            yield from ((1, r, None) for r in (whole if isinstance(whole, list) else [whole]))
            return
    with open(path, "rb") as probe:
        zipped = probe.read(2) == GZIP_MAGIC  # by content, not by name
    with (gzip.open if zipped else open)(path, "rb") as fh:
        for number, line in enumerate(iter(lambda: fh.readline(MAX_LINE_BYTES + 1), b""), 1):
            size, head = len(line), line
            counts["lines"] += 1
            while size > MAX_LINE_BYTES and line and not line.endswith(b"\n"):
                line = fh.readline(MAX_LINE_BYTES)
                size += len(line)
            if size > MAX_LINE_BYTES:
                bad(str(path), number, "line_too_long", f"line of {size} bytes is over the "
                    f"{MAX_LINE_BYTES}-byte limit: drop query text or document content", head[:512])
            elif head.strip():
                try:
                    yield number, json.loads(head), head
                except ValueError as exc:
                    bad(str(path), number, "invalid_json", f"not valid JSON ({exc}): the line may "
                        "be truncated; write one complete JSON object per line", head)


def _read_record(source: str, number: int, record: Any, raw: bytes | None, rows: list[tuple],
                 counts: Counter, bad: Reject) -> None:
    """Append the rows of one parsed record; quarantine each bad request or span in it."""
    is_dict, units = isinstance(record, dict), []
    if is_dict and "resourceSpans" in record:
        units = [lambda s=s: _span_rows(s.get("traceId"), s.get("startTimeUnixNano"), flatten(
            {a["key"]: _any_value(a.get("value") or {}) for a in s.get("attributes") or []}))
            for rs in record["resourceSpans"] or [] for ss in rs.get("scopeSpans") or []
            for s in ss.get("spans") or []]
    elif is_dict and ("retrieved" in record or "request_id" in record):
        units = [lambda: _native(record)]
    elif is_dict and ("attributes" in record or "span_kind" in record):
        context = record.get("context") or {}
        units = [lambda: _span_rows(
            context.get("trace_id") or record.get("context.trace_id"), record.get("start_time"),
            flatten(record.get("attributes") or {}), record.get("span_kind"))]
    else:
        bad(source, number, "unrecognised" if is_dict else "not_an_object", "not a request or a "
            "span object: see docs/request-logs.md", raw or json.dumps(record, default=str))
    for unit in units:
        try:
            produced = unit()
        except BadRecord as exc:
            bad(source, number, *exc.args, raw or json.dumps(record, default=str))
            continue
        counts["requests" if produced is not None else "spans_skipped"] += 1
        rows.extend(produced or [])


def _field(value: Any, name: str, kind: str = "text", required: bool = False) -> Any:
    """A validated optional value: text, int or number (bools are refused)."""
    if value is None:
        if required:
            raise BadRecord("missing_field", f"missing {name!r}: every request needs it")
        return None
    types, label = _TYPES[kind]
    if isinstance(value, bool) or not isinstance(value, types):
        raise BadRecord("wrong_type", f"{name!r} is {_short(value)}: write it as {label}")
    if kind == "int" and not 0 <= value <= INT32_MAX:
        raise BadRecord("out_of_range", f"{name!r} is {_short(value)}: write an integer "
                                        f"from 0 to {INT32_MAX}")
    if kind == "number":
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise BadRecord("out_of_range", f"{name!r} is {_short(value)}: write a finite "
                                            "number such as 0.83")
        return number
    return str(value) if kind == "text" else value


def _short(value: Any) -> str:
    """repr of a value, cut to 40 characters (a 400-digit number stays readable)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def parse_ts(value: Any, name: str = "ts") -> datetime:
    """ISO-8601 text (naive = UTC) or Unix epoch seconds / ms / us / ns as aware UTC."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise BadRecord("bad_timestamp", f"{name!r}={value!r} is not a time: use ISO-8601 "
                                         "such as 2026-01-01T12:00:00Z")
    try:
        if isinstance(value, (str, datetime)):
            return as_utc(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            scale = next(s for limit, s in ((1e17, 1e9), (1e14, 1e6), (1e11, 1e3), (-1, 1))
                         if abs(value) >= limit)
            return datetime.fromtimestamp(value / scale, timezone.utc)
    except (ValueError, OverflowError, OSError) as exc:
        raise BadRecord("bad_timestamp", f"{name!r}={value!r} is not a time ({exc}): use "
                                         "ISO-8601 such as 2026-01-01T12:00:00Z") from exc
    raise BadRecord("missing_field" if value is None else "wrong_type",
                    f"{name!r} is {value!r}: write the request time as ISO-8601 text")


def _native(record: dict) -> list[tuple]:
    rid = _field(record.get("request_id"), "request_id", required=True)
    ts = parse_ts(record.get("ts"))
    route, segment, shard = (_field(record.get(k), k) for k in ("route", "user_segment", "shard"))
    items = record.get("retrieved")
    if not isinstance(items, list):
        raise BadRecord("missing_field" if items is None else "wrong_type",
                        "'retrieved' must be a list of {doc_id or point_id, chunk_index, ...}")
    rows = []
    for pos, item in enumerate(items):
        at = f"retrieved[{pos}]"
        if not isinstance(item, dict):
            raise BadRecord("wrong_type", f"{at} must be an object with doc_id or point_id")
        doc_id, point = (_field(item.get(k), f"{at}.{k}") for k in ("doc_id", "point_id"))
        if doc_id is None and point is None:
            raise BadRecord("missing_field", f"{at} has neither doc_id nor point_id")
        rank = _field(item.get("rank"), f"{at}.rank", "int")
        rows.append((rid, ts, route, segment, _field(item.get("shard"), f"{at}.shard") or shard,
                     doc_id, point, _field(item.get("chunk_index"), f"{at}.chunk_index", "int"),
                     pos + 1 if rank is None else rank,
                     _field(item.get("score"), f"{at}.score", "number")))
    return rows


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts and lists of objects as one dict of dotted keys (`a.0.b`)."""
    if isinstance(value, list) and value and all(isinstance(v, (dict, list)) for v in value):
        value = {str(i): v for i, v in enumerate(value)}
    if not isinstance(value, dict):
        return {prefix: value} if prefix else {}
    out: dict[str, Any] = {}
    for key, item in value.items():
        out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _any_value(value: dict) -> Any:
    """An OTLP/JSON AnyValue as a plain Python value."""
    if "arrayValue" in value:
        return [_any_value(v) for v in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return {kv["key"]: _any_value(kv.get("value") or {})
                for kv in value["kvlistValue"].get("values", [])}
    return int(value["intValue"]) if "intValue" in value else \
        next((v for k, v in value.items() if k.endswith("Value")), None)


def _metadata(value: Any) -> dict:
    try:
        parsed = value if value is None or isinstance(value, dict) else json.loads(value)
    except (TypeError, ValueError) as exc:
        raise BadRecord("bad_metadata", f"document metadata is not JSON ({exc})") from exc
    if parsed is not None and not isinstance(parsed, dict):
        raise BadRecord("bad_metadata", "document metadata must be a JSON object")
    return parsed or {}


def _documents(attrs: dict[str, Any], pattern: re.Pattern, whole: str) -> dict[int, dict]:
    if isinstance(attrs.get(whole), str):  # the whole list recorded as one JSON string
        try:
            attrs = {**attrs, **flatten(json.loads(attrs[whole]), whole)}
        except ValueError as exc:
            raise BadRecord("invalid_json", f"{whole} is not valid JSON ({exc})") from exc
    docs: dict[int, dict] = {}
    for key, value in attrs.items():
        if match := pattern.match(key):
            doc = docs.setdefault(int(match[1]), {"metadata": {}})
            if match[2] == "metadata":
                doc["metadata"].update({match[3]: value} if match[3] else _metadata(value))
            else:
                doc[match[2]] = value
    return docs


def _span_rows(trace_id: Any, start: Any, attrs: dict[str, Any],
               kind: str | None = None) -> list[tuple] | None:
    """Rows of one retriever span (OpenInference or OTel GenAI); None for other spans."""
    if (attrs.get("openinference.span.kind") or kind) == "RETRIEVER":
        docs = _documents(attrs, _OI_DOC, "retrieval.documents")
    elif attrs.get("gen_ai.operation.name") == "retrieval":
        docs = _documents(attrs, _GENAI_DOC, "gen_ai.retrieval.documents")
    else:
        return None
    rid, ts = _field(trace_id, "trace id", required=True), parse_ts(start, "span start time")
    meta = _metadata(attrs.get("metadata"))
    route = _field(attrs.get("route") or attrs.get("http.route") or meta.get("route"), "route")
    segment = _field(attrs.get("user_segment") or meta.get("user_segment"), "user_segment")
    rows = []
    for rank, index in enumerate(sorted(docs), start=1):
        doc, at = docs[index], f"document {index}"
        ident, info = _field(doc.get("id"), f"{at} id"), doc["metadata"]
        point = _field(info.get("point_id"), f"{at} metadata.point_id") or (
            ident if ident and _UUID.match(ident) else None)
        doc_id = _field(info.get("doc_id"), f"{at} metadata.doc_id") or (
            ident if ident != point else None)
        if doc_id is None and point is None:
            raise BadRecord("missing_field", f"{at} has no id: record document.id")
        rows.append((rid, ts, route, segment, _field(info.get("shard"), f"{at} shard"), doc_id,
                     point, _field(info.get("chunk_index"), f"{at} chunk_index", "int"), rank,
                     _field(doc.get("score"), f"{at} score", "number")))
    return rows
