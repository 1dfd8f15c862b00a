"""The freshness resource: Settings for the core, configured from the environment."""


import os
from functools import lru_cache

import dagster as dg

from freshness.config import Settings
from freshness.embed.models import DEFAULT_MODEL
from freshness.runtime import Runtime


@lru_cache(maxsize=8)
def _runtime(settings: Settings) -> Runtime:
    return Runtime(settings)


class FreshnessResource(dg.ConfigurableResource):
    """Where the corpus, the state and the Qdrant index live, and which model embeds."""

    source_kind: str = "folder"
    source_path: str | None = None
    source_table: str | None = None
    replay_snapshot: str | None = None
    replay_log: str | None = None
    state_root: str = ".freshness/state"
    index_path: str = ".freshness/qdrant"
    qdrant_url: str | None = None
    qdrant_api_key: str | None = None
    model: str = DEFAULT_MODEL
    device: str = "auto"
    batch_size: int = 64
    budget_gpu_seconds_per_day: float = 3600.0
    max_staleness_hours: float | None = None

    def settings(self) -> Settings:
        values = {k: v for k, v in self.model_dump().items() if v is not None}
        return Settings.from_env(**values)

    def runtime(self) -> Runtime:
        """A runtime reused within the process (the model loads once per worker)."""
        return _runtime(self.settings())

    @classmethod
    def from_env(cls) -> "FreshnessResource":
        """Defaults from FRESHNESS_* variables; the API key as an EnvVar (never shown)."""
        base = Settings.from_env()
        api_key = dg.EnvVar("QDRANT_API_KEY") if os.getenv("QDRANT_API_KEY") else None
        return cls(
            source_kind=base.source_kind, source_path=base.source_path,
            source_table=base.source_table, replay_snapshot=base.replay_snapshot,
            replay_log=base.replay_log, state_root=base.state_root, index_path=base.index_path,
            qdrant_url=base.qdrant_url, qdrant_api_key=api_key, model=base.model,
            device=base.device, batch_size=base.batch_size,
            budget_gpu_seconds_per_day=base.budget_gpu_seconds_per_day,
            max_staleness_hours=base.max_staleness_hours,
        )
