"""Settings: every knob, read from FRESHNESS_* environment variables or passed in."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

from freshness.errors import ConfigError

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@dataclass(frozen=True)
class Settings:
    """Where the corpus, the state and the index are, and how to chunk and embed."""

    source_kind: str = "folder"  # folder | table | duckdb | replay | postgres | git
    source_path: str | None = None  # folder/Parquet/DuckDB path or URI (s3://, gs://), git repo
    source_table: str | None = None  # table name inside a DuckDB file or PostgreSQL database
    # Sources (docs/sources.md): a PostgreSQL DSN (secret: never shown), a git ref and subfolder,
    # comma-separated include/exclude globs for folder and git sources, folder levels per shard
    source_dsn: str | None = None
    source_ref: str | None = None
    source_subdir: str | None = None
    source_include: str | None = None
    source_exclude: str | None = None
    shard_depth: int = 1
    replay_snapshot: str | None = None
    replay_log: str | None = None
    replay_as_of_seq: int | None = None
    state_root: str = ".freshness/state"  # local folder or s3://… / gs://… URI
    index_path: str = ".freshness/qdrant"  # embedded Qdrant folder
    qdrant_url: str | None = None  # a Qdrant server or cluster; overrides index_path
    qdrant_api_key: str | None = None
    qdrant_prefer_grpc: bool = False
    qdrant_timeout_s: int = 30
    qdrant_grpc_port: int = 6334
    qdrant_retries: int = 6
    qdrant_backoff_s: float = 1.0
    qdrant_replication_factor: int | None = None
    qdrant_shard_number: int | None = None
    alias: str = "chunks"
    model: str = DEFAULT_MODEL
    model_revision: str | None = None
    device: str = "auto"
    batch_size: int = 64
    chunk_tokens: int | None = None  # default: the model's max sequence length minus 2
    overlap_tokens: int = 32
    max_doc_bytes: int = 2_000_000
    duckdb_memory_limit: str = "512MB"  # per table-source connection; the rest spills to disk
    lock_timeout_s: float = 120.0
    index_check_interval_minutes: float = 60.0  # quiet shards re-read Qdrant ids this often
    # Cadence policy (see docs/policy.md)
    budget_gpu_seconds_per_day: float = 3600.0
    max_staleness_hours: float | None = None  # per-shard SLA: embed a change within this
    min_interval_minutes: float = 0.0
    run_overhead_s: float = 20.0  # prior until runs are measured
    per_chunk_s: float = 0.002
    batch_shards: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> Settings:
        """Settings from FRESHNESS_<FIELD> variables (QDRANT_API_KEY is also read)."""
        env = os.environ if env is None else env
        values: dict = {}
        for f in fields(cls):
            raw = env.get(f"FRESHNESS_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(f.name, f.type, raw)
        if "qdrant_api_key" not in values and env.get("QDRANT_API_KEY"):
            values["qdrant_api_key"] = env["QDRANT_API_KEY"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_(self, **changes) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def __repr__(self) -> str:  # never print the API key
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        if shown["qdrant_api_key"]:
            shown["qdrant_api_key"] = "***"
        if shown["source_dsn"]:
            shown["source_dsn"] = "***"
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"


def _convert(name: str, type_text: str, raw: str):
    try:
        if "bool" in type_text:
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        if "int" in type_text:
            return int(raw)
        if "float" in type_text:
            return float(raw)
    except ValueError as exc:
        raise ConfigError(
            f"FRESHNESS_{name.upper()}={raw!r} is not a valid {type_text}: fix or unset it"
        ) from exc
    return raw
