"""Where things live under the state root: the one module that knows the path layout.

    <state root>/
      collections/<collection>/shards/<shard>/   manifest.json, chunks-<v>.parquet,
                                                 pending.json, pending_docs-*.parquet, lease
      collections/<collection>/retired/<shard>-<time>/  state of a vanished shard, archived
      sources/shards/<shard>/rate_history.parquet   change-rate polls (model independent)
      sources/listings/<shard>/listing_cache.parquet  a source's last listing (file tokens,
                                                      hashes): what moved is all it re-reads
      sources/shards/<shard>/poll_hashes.parquet    doc hashes of the last poll (content diff)
      index/served_history.json                     collections the alias served, oldest first
      runs/<finished>-<id>.json                     one record per sync run (cost learning)
      traffic/shares.json                           retrieval shares written by recency
      traffic/days/<date>.parquet                   per-doc retrieval counts of a day (4 weeks)
      recency/day=<date>/                           recency report tables
      recency/latest_shards.json                    per-shard stale rates of the latest report

Every path is a tuple of segments for `StateStore`; a shard name becomes one segment through
`shard_segment` (and back through `shard_from_segment`).
"""

from __future__ import annotations

from freshness.util import shard_names

MANIFEST_FILE = "manifest.json"
PENDING_FILE = "pending.json"
RATE_HISTORY_FILE = "rate_history.parquet"
LISTING_CACHE_FILE = "listing_cache.parquet"
POLL_HASHES_FILE = "poll_hashes.parquet"
RUNS_DIR: tuple[str, ...] = ("runs",)
TRAFFIC_FILE: tuple[str, ...] = ("traffic", "shares.json")
TRAFFIC_DAYS_DIR: tuple[str, ...] = ("traffic", "days")
RECENCY_DIR: tuple[str, ...] = ("recency",)
RECENCY_SHARDS_FILE: tuple[str, ...] = (*RECENCY_DIR, "latest_shards.json")


def shard_segment(shard: str) -> str:
    """The path segment of a shard name: nested names (`tenants/acme`) become one folder
    (`tenants%2Facme`). The encoding lives in `util.shard_names` so the embedded index, which
    may not import the state layer, names its folders the same way."""
    return shard_names.shard_segment(shard)


def shard_from_segment(segment: str) -> str:
    """The shard name a path segment stands for (inverse of `shard_segment`)."""
    return shard_names.shard_from_segment(segment)


SERVED_HISTORY_FILE: tuple[str, ...] = ("index", "served_history.json")


def collection_dir(collection: str) -> tuple[str, ...]:
    """Everything the state holds for one collection."""
    return ("collections", collection)


def shards_dir(collection: str) -> tuple[str, ...]:
    """The folder holding one sub-folder per shard of a collection."""
    return ("collections", collection, "shards")


def shard_dir(collection: str, shard: str) -> tuple[str, ...]:
    """One shard's committed state in one collection."""
    return (*shards_dir(collection), shard_segment(shard))


def retired_dir(collection: str) -> tuple[str, ...]:
    """Where the state of shards retired from a collection is archived."""
    return ("collections", collection, "retired")


def retired_shard_dir(collection: str, shard: str, stamp: str) -> tuple[str, ...]:
    """Where one retirement of a shard is archived (nested names stay one segment)."""
    return (*retired_dir(collection), f"{shard_segment(shard)}-{stamp}")


def source_shards_dir() -> tuple[str, ...]:
    """The folder of per-shard source facts that do not depend on the model (rates)."""
    return ("sources", "shards")


def rate_history_path(shard: str) -> tuple[str, ...]:
    return (*source_shards_dir(), shard_segment(shard), RATE_HISTORY_FILE)


def listing_cache_path(shard: str) -> tuple[str, ...]:
    """A source's memory of its last listing of a shard (kept apart from the rate history)."""
    return ("sources", "listings", shard_segment(shard), LISTING_CACHE_FILE)


def poll_hashes_path(shard: str) -> tuple[str, ...]:
    return (*source_shards_dir(), shard_segment(shard), POLL_HASHES_FILE)


def recency_day_dir(day_iso: str) -> tuple[str, ...]:
    return (*RECENCY_DIR, f"day={day_iso}")
