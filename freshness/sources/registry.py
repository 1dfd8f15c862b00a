"""Source kinds by name: adding a kind is its module plus one line in `SOURCE_KINDS`.

Each entry builds the source from Settings (`FRESHNESS_SOURCE_KIND` / `--source`). Kinds with
heavy or optional dependencies (psycopg2, pygit2) import them only when built.
"""

from __future__ import annotations

from collections.abc import Callable

from freshness.config import Settings
from freshness.errors import ConfigError
from freshness.sources.base import Source
from freshness.sources.folder import FolderSource
from freshness.sources.git import GitSource
from freshness.sources.postgres import PostgresSource
from freshness.sources.replay import ReplaySource
from freshness.sources.table import TableSource

SOURCE_KINDS: dict[str, Callable[[Settings], Source]] = {
    "folder": FolderSource.from_settings,
    "table": TableSource.parquet_from_settings,
    "duckdb": TableSource.duckdb_from_settings,
    "replay": ReplaySource.from_settings,
    "postgres": PostgresSource.from_settings,
    "git": GitSource.from_settings,
}


def build_source(settings: Settings) -> Source:
    """The source Settings name."""
    factory = SOURCE_KINDS.get(settings.source_kind)
    if factory is None:
        raise ConfigError(f"unknown source_kind {settings.source_kind!r}: use one of "
                          f"{', '.join(SOURCE_KINDS)} (FRESHNESS_SOURCE_KIND or --source)")
    return factory(settings)

