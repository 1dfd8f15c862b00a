"""The state-backed `ListingCache`: one Parquet file per shard, tagged with the source's name."""

from __future__ import annotations

import pyarrow as pa

from freshness.errors import StateError
from freshness.state import layout
from freshness.state.store import StateStore

SOURCE_KEY = b"freshness.source"


class StateListingCache:
    """A source's last listing of each shard, under `sources/listings/` in the state root.

    A cache written by another source (a different path or kind) is ignored, and a corrupt
    file only costs a full re-hash: the cache is an optimisation, never the truth.
    """

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def load(self, source: str, shard: str) -> pa.Table | None:
        try:
            table = self.store.read_table(*layout.listing_cache_path(shard))
        except StateError:
            return None
        if table is None or (table.schema.metadata or {}).get(SOURCE_KEY) != source.encode():
            return None
        return table

    def save(self, source: str, shard: str, table: pa.Table) -> None:
        tagged = table.replace_schema_metadata({SOURCE_KEY: source.encode()})
        self.store.write_table(tagged, *layout.listing_cache_path(shard))
