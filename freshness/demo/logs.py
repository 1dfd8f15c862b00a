"""Synthetic request logs for the demo and tests: queries drawn by doc popularity (Zipf).

Everything here is generated: no record comes from a real user. Requests retrieve chunks of
popular docs far more often than of others, over a corpus that changes while it is queried,
and are written in the native JSONL format of docs/request-logs.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from freshness.errors import FreshnessError
from freshness.state.manifest import ShardStateStore
from freshness.util.timeutil import as_utc, utc_now

ROUTES = (("chat", 0.6), ("search", 0.3), ("api", 0.1))
SEGMENTS = (("free", 0.7), ("pro", 0.3))
_CANDIDATES = 8  # popularity draws per request before settling on docs that exist at q


def zipf_weights(n: int, exponent: float = 1.1) -> np.ndarray:
    """Popularity of n items by rank, 1 / rank**exponent, summing to 1."""
    weights = 1.0 / np.arange(1, n + 1, dtype=float) ** exponent
    return weights / weights.sum()


def _pick(rng: np.random.Generator, choices: Sequence[tuple[str, float]], n: int) -> list[str]:
    names, weights = zip(*choices)
    return list(rng.choice(names, size=n, p=np.array(weights) / sum(weights)))


def _frame(rng: np.random.Generator, docs: list[str], start: datetime, end: datetime,
           n_requests: int, exponent: float) -> tuple[np.ndarray, np.ndarray]:
    """Sorted query times (epoch seconds) and Zipf-drawn candidate docs per request."""
    if not docs or end <= start or n_requests <= 0:
        raise FreshnessError(f"synthetic logs need docs ({len(docs)}), n_requests > 0 "
                             f"({n_requests}) and start < end ({start} .. {end})")
    popular = np.array(docs, dtype=object)[rng.permutation(len(docs))]
    draws = rng.choice(len(docs), size=(n_requests, _CANDIDATES), p=zipf_weights(len(docs),
                                                                                 exponent))
    times = np.sort(rng.uniform(as_utc(start).timestamp(), as_utc(end).timestamp(), n_requests))
    return times, popular[draws]


def _request(i: int, ts: float, route: str, segment: str, retrieved: list[dict]) -> dict:
    return {"request_id": f"demo-{i:07d}",
            "ts": datetime.fromtimestamp(ts, timezone.utc).isoformat(), "route": route,
            "user_segment": segment, "retrieved": retrieved,
            "query": f"synthetic question about {retrieved[0]['doc_id']}"}


def requests_from_versions(versions: pa.Table, start: datetime, end: datetime, n_requests: int,
                           *, top_k: int = 3, exponent: float = 1.1, seed: int = 7,
                           ids: str = "both") -> list[dict]:
    """Requests in [start, end) retrieving chunks that were live in the index at query time.

    `versions` is the table of `freshness.recency.report.load_versions`; `ids` is "both", "point_id"
    or "doc_id" (doc id and chunk index) for what each retrieved item names. A request whose
    drawn docs all had no live chunk at its time is left out.
    """
    rng = np.random.default_rng(seed)
    times, candidates = _frame(rng, sorted(set(versions["doc_id"].to_pylist())), start, end,
                               n_requests, exponent)
    con = duckdb.connect()
    con.register("versions", versions)
    con.register("cand", pa.table({
        "req": np.repeat(np.arange(n_requests), _CANDIDATES),
        "try": np.tile(np.arange(_CANDIDATES), n_requests),
        "q": pa.array(np.repeat(times * 1e6, _CANDIDATES).astype("int64")).cast(
            pa.timestamp("us")).cast(pa.timestamp("us", "UTC")),
        "doc_id": pa.array(candidates.reshape(-1), pa.string())}))
    picked = con.sql(f"""
        WITH live AS (SELECT c.req, c.try, v.doc_id, v.point_id, v.chunk_index FROM cand c
                      JOIN versions v ON v.doc_id = c.doc_id AND v.embedded_at <= c.q
                       AND c.q < coalesce(v.retired_at, 'infinity'::TIMESTAMPTZ)),
             first AS (SELECT req, min(try) AS try FROM live GROUP BY req)
        SELECT req, doc_id, point_id, chunk_index,
               row_number() OVER (PARTITION BY req ORDER BY hash(point_id, req, {seed})) AS rank
        FROM live JOIN first USING (req, try) QUALIFY rank <= {top_k} ORDER BY req, rank
    """).to_arrow_table().to_pylist()
    routes, segments = _pick(rng, ROUTES, n_requests), _pick(rng, SEGMENTS, n_requests)
    by_request: dict[int, list[dict]] = {}
    for row in picked:
        item = {"doc_id": row["doc_id"], "chunk_index": row["chunk_index"],
                "point_id": row["point_id"], "rank": row["rank"],
                "score": round(0.9 - 0.07 * (row["rank"] - 1) - 0.05 * rng.random(), 4)}
        drop = {"point_id": ("doc_id", "chunk_index"), "doc_id": ("point_id",)}.get(ids, ())
        by_request.setdefault(row["req"], []).append(
            {k: v for k, v in item.items() if k not in drop})
    return [_request(i, times[i], routes[i], segments[i], by_request[i])
            for i in sorted(by_request)]


def requests_from_states(states: Sequence[tuple[datetime, Mapping[str, object]]], end: datetime,
                         n_requests: int, *, top_k: int = 3, exponent: float = 1.1,
                         seed: int = 7) -> list[dict]:
    """Requests in [first state time, end) over a corpus given as (time, {doc_id: version}).

    A doc can be retrieved while it is in the state in force at query time; each item names
    the doc (chunk 0) and, for reference, the version that was current then.
    """
    states = sorted(((as_utc(t), dict(docs)) for t, docs in states), key=lambda s: s[0])
    docs = sorted({d for _, mapping in states for d in mapping})
    rng = np.random.default_rng(seed)
    times, candidates = _frame(rng, docs, states[0][0], end, n_requests, exponent)
    starts = np.array([t.timestamp() for t, _ in states])
    in_force = np.searchsorted(starts, times, side="right") - 1
    routes, segments = _pick(rng, ROUTES, n_requests), _pick(rng, SEGMENTS, n_requests)
    requests = []
    for i, (ts, state) in enumerate(zip(times, in_force)):
        present = states[state][1]
        chosen = list(dict.fromkeys(d for d in candidates[i] if d in present))[:top_k]
        retrieved = [{"doc_id": d, "chunk_index": 0, "rank": r, "version": str(present[d]),
                      "score": round(0.9 - 0.07 * (r - 1), 4)} for r, d in enumerate(chosen, 1)]
        if retrieved:
            requests.append(_request(i, ts, routes[i], segments[i], retrieved))
    return requests


def write_jsonl(requests: Sequence[dict], path: str | Path) -> int:
    """Write requests as native JSONL (one object per line); returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        for request in requests:
            out.write(json.dumps(request) + "\n")
    return len(requests)


def write_demo_logs(state: ShardStateStore, path: str | Path, n_requests: int = 1000,
                    start: datetime | None = None, end: datetime | None = None,
                    seed: int = 7) -> int:
    """Synthetic logs over a collection's manifests and history (default: first embed to now)."""
    from freshness.recency.report import load_versions

    versions = load_versions(state)
    if not versions.num_rows:
        raise FreshnessError(f"collection {state.collection!r} has no indexed chunks yet: run "
                         "`freshness sync` before generating demo logs")
    first = min(versions["embedded_at"].to_pylist())
    end = end or utc_now()  # nothing can be retrieved before the first embedding
    start = max(as_utc(start), first) if start else min(first, end - timedelta(days=1))
    return write_jsonl(requests_from_versions(versions, start, end, n_requests, seed=seed), path)
