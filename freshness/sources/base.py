"""The source protocol: what a corpus must offer so its shards can be kept fresh.

A source is read in two steps so change detection stays cheap on large corpora:
`listing(shard)` returns one row per document with a content hash and update time (no
content), and `read(shard, doc_ids)` returns the content of just the documents that changed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import pyarrow as pa

from freshness.util.shard_names import shard_name_problem

LISTING_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("doc_hash", pa.string()),
        ("updated_at", pa.timestamp("us", tz="UTC")),
    ]
)
DOCS_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("content", pa.string()),
        ("updated_at", pa.timestamp("us", tz="UTC")),
        ("metadata", pa.string()),
    ]
)


@dataclass(frozen=True)
class Skip:
    """A document (or shard) left out of this scan, with the reason and the fix.

    `keep_indexed`: the doc's indexed version stays served (it could not be read this time);
    False for entries refused for good (outside the root, not a regular file), which leave
    the index like deleted docs.
    """

    doc_id: str
    shard: str | None
    reason: str
    keep_indexed: bool = True


@dataclass
class Discovery:
    """The shards a source holds now, and the ones refused (e.g. unsafe names)."""

    shards: list[str]
    skips: list[Skip] = field(default_factory=list)

    @classmethod
    def of_names(cls, names: Iterable[str], skip_id: Callable[[str], str] = lambda _: "*"
                 ) -> Discovery:
        """The valid shard names, in order; each refused name becomes a skip (its id from
        `skip_id`) with the reason and the fix."""
        shards, skips = [], []
        for name in names:
            problem = shard_name_problem(name)
            if problem:
                skips.append(Skip(doc_id=skip_id(name), shard=None, reason=problem))
            else:
                shards.append(name)
        return cls(shards, skips)


@dataclass
class Listing:
    """One shard's documents as the source has them now: ids, hashes, update times."""

    shard: str
    docs: pa.Table
    scanned_at: datetime
    complete: bool = True
    skips: list[Skip] = field(default_factory=list)
    notes: Counter = field(default_factory=Counter)

    @property
    def skipped_doc_ids(self) -> set[str]:
        """Ids that must be left as indexed: they were seen but could not be read."""
        return {s.doc_id for s in self.skips if s.keep_indexed}


class ListingCache(Protocol):
    """Per-shard memory of a source's last listing (e.g. file tokens and hashes), kept in the
    state by the runtime so that a listing re-reads only what moved. Sources that list cheaply
    without it ignore it."""

    def load(self, source: str, shard: str) -> pa.Table | None:
        """The table saved for (source, shard), or None."""

    def save(self, source: str, shard: str, table: pa.Table) -> None:
        """Replace the table kept for (source, shard)."""


class Source(ABC):
    """A corpus split into shards. A new kind subclasses this and implements all five methods
    (docs/sources.md); one line in `sources/registry.py` registers it."""

    name: str

    @abstractmethod
    def discover(self) -> Discovery:
        """List the shards the source holds now."""

    @abstractmethod
    def listing(self, shard: str) -> Listing:
        """Ids, content hashes (md5 of the UTF-8 text) and update times of a shard's docs."""

    @abstractmethod
    def read(self, shard: str, doc_ids: Sequence[str]) -> pa.Table:
        """Content of the given docs (DOCS_SCHEMA); ids no longer present are left out."""

    @abstractmethod
    def refresh(self) -> None:
        """Called at the start of every scan (sync, detect, sensor tick): drop what a scan must
        not reuse (a source with no caches does nothing)."""

    def use_listing_cache(self, cache: ListingCache | None) -> None:  # noqa: B027 - optional
        """Keep listing facts across processes in `cache` (sources without one ignore it)."""

    @abstractmethod
    def change_tokens(self) -> dict[str, str]:
        """A cheap per-shard fingerprint that changes when the shard's docs change.

        Used by sensors to poll without listing: only shards whose token moved are scanned.
        """
