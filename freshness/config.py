"""Settings: the one description of every setting, read from FRESHNESS_* variables or passed in.

Each field names its group, its environment variable (`FRESHNESS_<FIELD>` unless stated) and a
valid example; values are parsed by type (one parser per type) and validated once, when the
Settings are built, with an error that names the variable and shows a valid value. The CLI
builds Settings from flags over the environment; the Dagster resources expose the same fields
(tests/test_config.py fails if they drift) and build Settings from their own values.
"""

from __future__ import annotations

import json
import math
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlparse

from freshness.errors import ConfigError

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
GROUPS = ("source", "state", "index", "embedding", "policy", "alerts", "recency", "dagster")
DEVICES = ("auto", "cpu", "cuda", "mps")


def setting(default, group: str, help: str, example: str, *, env: str | None = None,
            secret: bool = False):
    """A Settings field: its default, group, one-line help, a valid example value."""
    assert group in GROUPS, group
    return field(default=default, metadata={"group": group, "help": help, "example": example,
                                            "env": env, "secret": secret})


@dataclass(frozen=True)
class Settings:
    """Where the corpus, state and index are; how to chunk and embed; cadence and alerts."""

    # -- source: what is indexed
    source_kind: str = setting("folder", "source", "folder, table (Parquet), duckdb, replay, "
                               "postgres, git (docs/sources.md)", "folder")
    source_path: str | None = setting(None, "source", "corpus folder or URI (s3://, gs://, "
                                      "abfs://), Parquet path/glob/URI, DuckDB file, or git "
                                      "repository (clone or bare)", "s3://bucket/docs")
    source_table: str | None = setting(None, "source", "table inside a DuckDB file or "
                                       "PostgreSQL database", "docs")
    source_dsn: str | None = setting(None, "source", "postgres: connection string (never "
                                     "logged)", "postgresql://app@db.example/kb", secret=True)
    source_ref: str | None = setting(None, "source", "git: branch, tag or commit (default "
                                     "HEAD)", "main")
    source_subdir: str | None = setting(None, "source", "git: the folder of the repository to "
                                        "index", "docs")
    source_include: str | None = setting(None, "source", "folder/git: comma-separated globs "
                                         "to index (default *.md,*.markdown,*.txt,*.rst; with "
                                         "'/' a glob matches the path)", "*.md,*.txt")
    source_exclude: str | None = setting(None, "source", "folder/git: comma-separated globs "
                                         "to leave out", "drafts/*,*.bin")
    shard_depth: int = setting(1, "source", "folder/git: folder levels that name a shard "
                               "(2: tenants/acme)", "2")
    replay_snapshot: str | None = setting(None, "source", "change-log replay: snapshot.parquet",
                                          "replay/snapshot.parquet")
    replay_log: str | None = setting(None, "source", "change-log replay: replay.parquet",
                                     "replay/replay.parquet")
    replay_as_of_seq: int | None = setting(None, "source", "replay: state after this commit",
                                           "300")
    max_doc_bytes: int = setting(2_000_000, "source", "larger docs are skipped and reported",
                                 "2000000")
    duckdb_memory_limit: str = setting("512MB", "source", "per table-source DuckDB connection; "
                                       "the rest spills to disk", "512MB")
    # -- state: manifests, rates, runs
    state_root: str = setting(".freshness/state", "state", "state folder or URI",
                              "s3://bucket/freshness")
    lock_timeout_s: float = setting(120.0, "state", "wait this long for a busy shard", "120")
    # -- index: Qdrant
    index_path: str = setting(".freshness/qdrant", "index", "embedded Qdrant folder",
                              ".freshness/qdrant")
    qdrant_url: str | None = setting(None, "index", "a Qdrant server or cluster; replaces the "
                                     "embedded index", "https://qdrant.example:6333")
    qdrant_api_key: str | None = setting(None, "index", "its API key (also read from "
                                         "QDRANT_API_KEY; never logged)", "<secret>",
                                         secret=True)
    qdrant_prefer_grpc: bool = setting(False, "index", "talk gRPC to the server", "true")
    qdrant_timeout_s: int = setting(30, "index", "request timeout", "30")
    qdrant_grpc_port: int = setting(6334, "index", "server gRPC port", "6334")
    qdrant_retries: int = setting(6, "index", "retries on transient server errors", "6")
    qdrant_backoff_s: float = setting(1.0, "index", "first retry delay (doubles)", "1.0")
    qdrant_replication_factor: int | None = setting(None, "index", "new collections' replicas",
                                                    "2")
    qdrant_shard_number: int | None = setting(None, "index", "new collections' Qdrant shards",
                                              "4")
    alias: str = setting("chunks", "index", "the alias queries use", "chunks")
    upsert_batch: int = setting(1000, "index", "points per upsert/delete request", "1000")
    edge_folders: int = setting(0, "index", "embedded index: new collections hash shards into "
                                "this many edge folders, the shard a payload filter (for "
                                "thousands of shards); 0 = a folder per shard", "16")
    index_check_interval_minutes: float = setting(60.0, "index", "quiet shards re-read their "
                                                  "Qdrant ids this often", "60")
    keep_old_collections: int = setting(1, "index", "after a model switch, keep this many "
                                        "previously served collections (rollback); drop older",
                                        "1")
    # -- embedding
    model: str = setting(DEFAULT_MODEL, "embedding", "sentence-transformers name or folder",
                         DEFAULT_MODEL)
    model_revision: str | None = setting(None, "embedding", "pins what was embedded (default: "
                                         "a fingerprint of the model files)", "v2")
    device: str = setting("auto", "embedding", "auto, cpu, cuda (fp16), cuda:N, mps", "cuda")
    batch_size: int = setting(64, "embedding", "encode batch size", "64")
    embed_block_size: int = setting(2048, "embedding", "chunks per encode call (progress, "
                                    "memory)", "2048")
    chunk_tokens: int | None = setting(None, "embedding", "chunk size in tokens (default: the "
                                       "model's limit)", "254")
    overlap_tokens: int = setting(32, "embedding", "overlap of windows of a long paragraph",
                                  "32")
    embedding_backend: str = setting("local", "embedding", "local (in-process "
                                     "sentence-transformers) or endpoint (OpenAI-compatible "
                                     "/v1/embeddings)", "endpoint")
    embedding_url: str | None = setting(None, "embedding", "endpoint base URL (the part before "
                                        "/embeddings)", "http://127.0.0.1:8080/v1")
    embedding_api_key: str | None = setting(None, "embedding", "endpoint API key (secret: env "
                                            "only)", "<secret>", secret=True)
    embedding_dim: int | None = setting(None, "embedding", "expected vector size, checked on "
                                        "every endpoint response", "384")
    embedding_concurrency: int = setting(4, "embedding", "endpoint requests in flight", "4")
    embedding_timeout_s: float = setting(60.0, "embedding", "endpoint request timeout", "60")
    embedding_retries: int = setting(6, "embedding", "retries on 408/429/5xx, timeouts and "
                                     "dropped connections (exponential backoff)", "6")
    embedding_tokenizer: str | None = setting(None, "embedding", "local tokenizer that chunking "
                                              "counts with (default: the model's)",
                                              "sentence-transformers/all-MiniLM-L6-v2")
    # -- policy: when to re-embed (docs/policy.md)
    budget_gpu_seconds_per_day: float = setting(3600.0, "policy", "the re-embedding budget",
                                                "3600")
    max_staleness_hours: float | None = setting(None, "policy", "SLA: a change is embedded "
                                                "within this (policy and alerts)", "24")
    min_interval_minutes: float = setting(0.0, "policy", "never re-run a shard sooner", "10")
    run_overhead_s: float = setting(20.0, "policy", "run overhead prior until runs are "
                                    "measured", "20")
    per_chunk_s: float = setting(0.002, "policy", "per-chunk cost prior", "0.002")
    batch_shards: bool = setting(True, "policy", "one run for all pending shards when one is "
                                 "due", "true")
    cost_unit: str = setting("gpu_seconds", "policy", "unit of the budget and of learned run "
                             "costs: gpu_seconds, tokens or usd", "tokens")
    usd_per_million_tokens: float = setting(0.0, "policy", "endpoint price, for cost_unit=usd",
                                            "0.02")
    # -- alerts
    per_shard_sla_hours: str | None = setting(None, "alerts", "per-shard SLAs (JSON object)",
                                              '{"linux": 6}')
    alert_warn_fraction: float = setting(0.5, "alerts", "WARN at this fraction of the SLA",
                                         "0.5")
    alert_cooldown_hours: float = setting(6.0, "alerts", "re-notify an open incident after",
                                          "6")
    slack_webhook_url: str | None = setting(None, "alerts", "Slack-compatible webhook "
                                            "(secret: env only)", "https://hooks.slack.com/...",
                                            secret=True)
    alert_webhook_url: str | None = setting(None, "alerts", "generic JSON webhook (secret: env "
                                            "only)", "https://alerts.example/hook", secret=True)
    alert_sink_retries: int = setting(3, "alerts", "delivery attempts per sink and tick", "3")
    alert_sink_backoff_s: float = setting(0.5, "alerts", "first retry delay (doubles)", "0.5")
    alert_delivery_budget_s: float = setting(20.0, "alerts", "seconds a sensor tick may spend "
                                             "delivering; the rest waits in the outbox", "20")
    alert_traffic_floor: float = setting(0.25, "alerts", "lowest traffic weight: a shard nobody "
                                         "reads alerts at SLA / this", "0.25")
    ui_url: str = setting("http://127.0.0.1:3000", "alerts", "base of the links in alerts",
                          "https://dagster.example")
    metrics_textfile: str | None = setting(None, "alerts", "Prometheus gauges for the node "
                                           "exporter's textfile collector",
                                           "/var/lib/node_exporter/freshness.prom")
    # -- recency
    request_logs_path: str | None = setting(None, "recency", "request logs ({date} = the day)",
                                            "logs/{date}.jsonl")
    # -- dagster
    reembed_run_tags: str | None = setting(None, "dagster", "YAML file of extra tags for "
                                           "re-embedding runs (e.g. Kubernetes GPU config)",
                                           "deploy/k8s/gpu_run_tags.yaml")
    demo_churn_seconds: int | None = setting(None, "dagster", "DEMO only: edit a doc this "
                                             "often", "90")

    def __post_init__(self) -> None:
        for f in fields(self):
            check = _CHECKS.get(f.name)
            value = getattr(self, f.name)
            if check is not None and value is not None:
                problem = check(value)
                if problem:
                    raise ConfigError(f"{env_name(f)}={value!r}: {problem}; for example "
                                      f"{env_name(f)}={f.metadata['example']}")
        if self.chunk_tokens is not None and self.overlap_tokens >= self.chunk_tokens:
            raise ConfigError(f"FRESHNESS_OVERLAP_TOKENS={self.overlap_tokens} must be smaller "
                              f"than FRESHNESS_CHUNK_TOKENS={self.chunk_tokens}; for example "
                              "FRESHNESS_OVERLAP_TOKENS=32")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> Settings:
        """Settings from FRESHNESS_<FIELD> variables; `overrides` (not None) win."""
        env = os.environ if env is None else env
        values: dict = {}
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            raw = env.get(env_name(f))
            if raw is None and f.name == "qdrant_api_key":
                raw = env.get("QDRANT_API_KEY")
            if raw is None or raw.strip() == "":
                continue
            values[f.name] = parse(f, hints[f.name], raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def __repr__(self) -> str:  # never print a secret
        def shown(f) -> str:
            value = getattr(self, f.name)
            return repr("***" if f.metadata["secret"] and value else value)

        return "Settings(" + ", ".join(f"{f.name}={shown(f)}" for f in fields(self)) + ")"

    def per_shard_sla(self) -> dict[str, float]:
        """`per_shard_sla_hours` parsed (validated at construction)."""
        return json.loads(self.per_shard_sla_hours) if self.per_shard_sla_hours else {}


def env_name(f) -> str:
    """The environment variable of a Settings field."""
    return f.metadata.get("env") or f"FRESHNESS_{f.name.upper()}"


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("not a boolean (true/false, 1/0, yes/no, on/off)")


def _float(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError("not a finite number")
    return value


PARSERS: dict[type, Callable[[str], object]] = {bool: _bool, int: int, float: _float, str: str}


def parse(f, annotation, raw: str):
    """Parse one variable's text by the field's type; the error names the variable."""
    base = annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        base = next(a for a in typing.get_args(annotation) if a is not type(None))
    try:
        return PARSERS[base](raw.strip() if base is not str else raw)
    except ValueError as exc:
        raise ConfigError(f"{env_name(f)}={raw!r} is not a valid {base.__name__} ({exc}); for "
                          f"example {env_name(f)}={f.metadata['example']}") from exc


def _positive(value) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    return None if value > 0 else "must be > 0"


def _non_negative(value) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    return None if value >= 0 else "must be >= 0"


def _fraction(value) -> str | None:
    return None if 0 < value < 1 else "must be between 0 and 1 (exclusive)"


def _device(value: str) -> str | None:
    base, _, index = value.partition(":")
    if base in DEVICES and (not index or (base == "cuda" and index.isdigit())):
        return None
    return f"unknown device: use one of {', '.join(DEVICES)} or cuda:N"


def _url(value: str) -> str | None:
    parsed = urlparse(value)
    if parsed.scheme in {"http", "https"} and parsed.hostname:
        try:
            parsed.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            return "malformed port"
        return None
    return "not an http(s) URL with a host"


def _state_root(value: str) -> str | None:
    if "://" in value:
        return None
    path = Path(value)
    if path.exists() and not path.is_dir():
        return "is a file, not a folder: point it at a folder (it is created if missing)"
    return None


def _sla_json(value: str) -> str | None:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        return f"not JSON ({exc.msg})"
    if not isinstance(parsed, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
            for v in parsed.values()):
        return "must be a JSON object of shard name -> positive hours"
    return None


def _one_of(*allowed: str) -> Callable[[object], str | None]:
    def check(value) -> str | None:
        return None if value in allowed else f"use one of {', '.join(allowed)}"

    return check


def _overlap(value: int) -> str | None:
    return None if value >= 0 else "must be >= 0"


_CHECKS: dict[str, Callable[[object], str | None]] = {
    "max_doc_bytes": _positive, "lock_timeout_s": _positive, "qdrant_timeout_s": _positive,
    "qdrant_grpc_port": _positive, "qdrant_retries": _non_negative,
    "qdrant_backoff_s": _non_negative, "qdrant_replication_factor": _positive,
    "qdrant_shard_number": _positive, "upsert_batch": _positive, "edge_folders": _non_negative,
    "index_check_interval_minutes": _non_negative, "keep_old_collections": _non_negative,
    "batch_size": _positive,
    "embed_block_size": _positive, "chunk_tokens": _positive, "overlap_tokens": _overlap,
    "budget_gpu_seconds_per_day": _non_negative, "max_staleness_hours": _positive,
    "min_interval_minutes": _non_negative, "run_overhead_s": _non_negative,
    "per_chunk_s": _non_negative, "alert_warn_fraction": _fraction,
    "alert_cooldown_hours": _non_negative, "alert_sink_retries": _positive,
    "alert_sink_backoff_s": _non_negative, "alert_delivery_budget_s": _positive,
    "alert_traffic_floor": _fraction, "device": _device, "qdrant_url": _url,
    "ui_url": _url, "state_root": _state_root, "per_shard_sla_hours": _sla_json,
    "demo_churn_seconds": _positive, "replay_as_of_seq": _non_negative,
    "shard_depth": _positive,
    "embedding_backend": _one_of("local", "endpoint"), "embedding_url": _url,
    "embedding_dim": _positive, "embedding_concurrency": _positive,
    "embedding_timeout_s": _positive, "embedding_retries": _non_negative,
    "cost_unit": _one_of("gpu_seconds", "tokens", "usd"), "usd_per_million_tokens": _non_negative,
}


def describe() -> list[dict]:
    """Every setting with its group, variable, default and help (README's table is made from
    this by `python -m freshness.config`; tests/test_config.py fails when they drift)."""
    rows = []
    for f in fields(Settings):
        default = "–" if f.default is None else f"`{f.default}`"
        rows.append({"group": f.metadata["group"], "variable": env_name(f), "field": f.name,
                     "default": default, "help": f.metadata["help"],
                     "secret": f.metadata["secret"]})
    return rows


def markdown_table() -> str:
    """The settings table for README.md."""
    lines = ["| group | variable | default | meaning |", "|---|---|---|---|"]
    for r in describe():
        lines.append(f"| {r['group']} | `{r['variable']}` | {r['default']} | {r['help']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
