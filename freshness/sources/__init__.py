"""Sources: where documents come from. A new kind is one module implementing `Source` plus one
line in `registry.SOURCE_KINDS` (docs/sources.md)."""

from freshness.sources.base import (
    DOCS_SCHEMA,
    LISTING_SCHEMA,
    Discovery,
    Listing,
    ListingCache,
    Skip,
    Source,
)
from freshness.sources.folder import FolderSource
from freshness.sources.git import GitSource
from freshness.sources.postgres import PostgresSource
from freshness.sources.replay import ReplaySource
from freshness.sources.table import TableSource

__all__ = [
    "DOCS_SCHEMA",
    "LISTING_SCHEMA",
    "Discovery",
    "FolderSource",
    "GitSource",
    "Listing",
    "ListingCache",
    "PostgresSource",
    "ReplaySource",
    "Skip",
    "Source",
    "TableSource",
]
