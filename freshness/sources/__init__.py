"""Sources: where documents come from. New kinds are one module implementing `Source`."""

from freshness.sources.base import DOCS_SCHEMA, LISTING_SCHEMA, Discovery, Listing, Skip, Source
from freshness.sources.folder import FolderSource
from freshness.sources.replay import ReplaySource
from freshness.sources.table import TableSource

__all__ = [
    "DOCS_SCHEMA",
    "LISTING_SCHEMA",
    "Discovery",
    "FolderSource",
    "Listing",
    "ReplaySource",
    "Skip",
    "Source",
    "TableSource",
]
