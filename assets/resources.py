"""The freshness resource: every setting of `freshness.config.Settings`, as Dagster config.

Its fields are Settings' fields, with the same names and defaults (tests/test_config.py fails
if they drift); `from_env` reads the FRESHNESS_* variables once, when the code location loads,
and passes secrets as `EnvVar`s so the UI never shows them. `settings()` builds Settings from
the resource's own values (validated there) without reading the environment again.
"""

import os
from dataclasses import fields
from functools import lru_cache

import dagster as dg

from freshness.config import DEFAULT_MODEL, Settings, env_name
from freshness.runtime import Runtime


@lru_cache(maxsize=8)
def _runtime(settings: Settings) -> Runtime:
    return Runtime(settings)


class FreshnessResource(dg.ConfigurableResource):
    """Where the corpus, state and Qdrant index live, which model embeds, cadence and alerts
    (each field is documented in freshness/config.py and README's settings table)."""

    # -- source
    source_kind: str = 'folder'
    source_path: str | None = None
    source_table: str | None = None
    source_dsn: str | None = None
    source_ref: str | None = None
    source_subdir: str | None = None
    source_include: str | None = None
    source_exclude: str | None = None
    shard_depth: int = 1
    replay_snapshot: str | None = None
    replay_log: str | None = None
    replay_as_of_seq: int | None = None
    max_doc_bytes: int = 2000000
    duckdb_memory_limit: str = '512MB'
    # -- state
    state_root: str = '.freshness/state'
    lock_timeout_s: float = 120.0
    # -- index
    index_path: str = '.freshness/qdrant'
    qdrant_url: str | None = None
    qdrant_api_key: str | None = None
    qdrant_prefer_grpc: bool = False
    qdrant_timeout_s: int = 30
    qdrant_grpc_port: int = 6334
    qdrant_retries: int = 6
    qdrant_backoff_s: float = 1.0
    qdrant_replication_factor: int | None = None
    qdrant_shard_number: int | None = None
    alias: str = 'chunks'
    upsert_batch: int = 1000
    edge_folders: int = 0
    index_check_interval_minutes: float = 60.0
    keep_old_collections: int = 1
    # -- embedding
    model: str = DEFAULT_MODEL
    model_revision: str | None = None
    device: str = 'auto'
    batch_size: int = 64
    embed_block_size: int = 2048
    chunk_tokens: int | None = None
    overlap_tokens: int = 32
    embedding_backend: str = 'local'
    embedding_url: str | None = None
    embedding_api_key: str | None = None
    embedding_dim: int | None = None
    embedding_concurrency: int = 4
    embedding_timeout_s: float = 60.0
    embedding_retries: int = 6
    embedding_tokenizer: str | None = None
    # -- policy
    budget_gpu_seconds_per_day: float = 3600.0
    max_staleness_hours: float | None = None
    min_interval_minutes: float = 0.0
    run_overhead_s: float = 20.0
    per_chunk_s: float = 0.002
    batch_shards: bool = True
    cost_unit: str = 'gpu_seconds'
    usd_per_million_tokens: float = 0.0
    # -- alerts
    per_shard_sla_hours: str | None = None
    alert_warn_fraction: float = 0.5
    alert_cooldown_hours: float = 6.0
    slack_webhook_url: str | None = None
    alert_webhook_url: str | None = None
    alert_sink_retries: int = 3
    alert_sink_backoff_s: float = 0.5
    alert_delivery_budget_s: float = 20.0
    alert_traffic_floor: float = 0.25
    ui_url: str = 'http://127.0.0.1:3000'
    metrics_textfile: str | None = None
    # -- recency
    request_logs_path: str | None = None
    # -- dagster
    reembed_run_tags: str | None = None
    demo_churn_seconds: int | None = None

    def settings(self) -> Settings:
        """Settings from these values (validated; raises ConfigError naming the variable)."""
        return Settings(**self.model_dump())

    def runtime(self) -> Runtime:
        """A runtime reused within the process (the model loads once per worker)."""
        return _runtime(self.settings())

    @classmethod
    def from_env(cls) -> "FreshnessResource":
        """Values from FRESHNESS_* variables; secrets as EnvVar (never shown in the UI)."""
        base = Settings.from_env()
        values = {}
        for f in fields(Settings):
            value = getattr(base, f.name)
            if f.metadata["secret"] and value is not None:
                name = env_name(f)
                value = dg.EnvVar(name if os.getenv(name) else "QDRANT_API_KEY")
            values[f.name] = value
        return cls(**values)
