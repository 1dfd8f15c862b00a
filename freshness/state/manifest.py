"""Per-shard manifests: what is indexed for a shard, written atomically by its run alone.

Layout under the state root, per collection and shard:
  collections/<collection>/shards/<shard>/manifest.json          the commit point
  collections/<collection>/shards/<shard>/chunks-<version>.parquet  every indexed chunk
  collections/<collection>/shards/<shard>/history/retired-<version>.parquet  chunks retired
  collections/<collection>/shards/<shard>/pending.json           last detection result
A run writes its chunk file first and `manifest.json` last, so a crash leaves the previous
version in force. Runs of different shards touch disjoint files: no shared writer lock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pyarrow as pa

from freshness.errors import StateError
from freshness.state import layout
from freshness.state.store import StateStore
from freshness.util.faults import fault_point

TS = pa.timestamp("us", tz="UTC")
MANIFEST_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("doc_hash", pa.string()),
        ("chunk_index", pa.int32()),
        ("content_hash", pa.string()),
        ("point_id", pa.string()),
        ("n_tokens", pa.int32()),
        ("source_updated_at", TS),
        ("embedded_at", TS),
    ]
)
HISTORY_SCHEMA = pa.schema(
    list(MANIFEST_SCHEMA) + [("superseded_at", TS), ("retired_at", TS)]
)
# per pending doc: since when, and how it changed (added / modified / deleted; null in files
# written before the column was kept)
PENDING_DOCS_SCHEMA = pa.schema([("doc_id", pa.string()), ("since", TS), ("change", pa.string())])
KEEP_OLD_VERSIONS = 1
log = logging.getLogger("freshness.state.manifest")


def _pending_docs(table: pa.Table) -> pa.Table:
    """A pending-docs table in PENDING_DOCS_SCHEMA (`change` null where it was not kept)."""
    if "change" not in table.column_names:
        table = table.append_column("change", pa.nulls(table.num_rows, pa.string()))
    return table.select(PENDING_DOCS_SCHEMA.names).cast(PENDING_DOCS_SCHEMA)


@dataclass
class ShardManifest:
    """One shard's committed state in one collection."""

    shard: str
    collection: str
    version: int = 0
    chunks: pa.Table = field(default_factory=MANIFEST_SCHEMA.empty_table)
    info: dict = field(default_factory=dict)

    @property
    def doc_count(self) -> int:
        return len(set(self.chunks.column("doc_id").to_pylist())) if self.chunks.num_rows else 0


class ShardStateStore:
    """Reads and commits the manifests of one collection's shards."""

    def __init__(self, store: StateStore, collection: str) -> None:
        self.store = store
        self.collection = collection

    def _dir(self, shard: str) -> tuple[str, ...]:
        return layout.shard_dir(self.collection, shard)

    def shards(self) -> list[str]:
        """Shards with a committed manifest."""
        return [n for n in self.shard_folders()
                if self.store.exists(*self._dir(n), layout.MANIFEST_FILE)]

    def shard_folders(self) -> list[str]:
        """Every shard with a folder in this collection (committed or not)."""
        return [layout.shard_from_segment(n)
                for n in self.store.list_dir(*layout.shards_dir(self.collection))]

    def load(self, shard: str) -> ShardManifest:
        """The committed manifest, or an empty version-0 one for a new shard."""
        info = self.store.read_json(*self._dir(shard), layout.MANIFEST_FILE)
        if info is None:
            return ShardManifest(shard, self.collection)
        where = self.store.path(*self._dir(shard), layout.MANIFEST_FILE)
        try:
            chunks_file, version = str(info["chunks_file"]), int(info["version"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"state file {where} lacks a valid chunks_file/version ({exc!r}): "
                             "run `freshness repair` to rebuild it from the index") from exc
        chunks = self.store.read_table(*self._dir(shard), chunks_file)
        if chunks is None:
            raise StateError(
                f"manifest of shard {shard!r} names {chunks_file}, which is missing: "
                "run `freshness repair` to rebuild it from the index"
            )
        try:
            chunks = chunks.select(MANIFEST_SCHEMA.names).cast(MANIFEST_SCHEMA)
        except (KeyError, ValueError, pa.ArrowInvalid) as exc:
            raise StateError(f"state file {chunks_file} of shard {shard!r} has another schema "
                             f"({exc}): run `freshness repair` to rebuild it from the index"
                             ) from exc
        return ShardManifest(shard, self.collection, version, chunks, info)

    def commit(self, previous: ShardManifest, chunks: pa.Table, retired: pa.Table,
               info: dict) -> ShardManifest:
        """Write a new version after `previous`; refuse when another run got there first."""
        current = self.store.read_json(*self._dir(previous.shard), layout.MANIFEST_FILE)
        current_version = int(current["version"]) if current else 0
        if current_version != previous.version:
            raise StateError(
                f"shard {previous.shard!r} was committed by another run (version "
                f"{previous.version} -> {current_version}) while this one ran: rerun it"
            )
        version = previous.version + 1
        chunks_file = f"chunks-{version:08d}.parquet"
        folder = self._dir(previous.shard)
        self.store.write_table(chunks.cast(MANIFEST_SCHEMA), *folder, chunks_file)
        if retired.num_rows:
            self.store.write_table(retired.cast(HISTORY_SCHEMA), *folder, "history",
                                   f"retired-{version:08d}.parquet")
        info = {**info, "shard": previous.shard, "collection": self.collection,
                "version": version, "chunks_file": chunks_file, "format": 1}
        fault_point("mid_manifest")
        self.store.write_json(info, *folder, layout.MANIFEST_FILE)
        self._drop_old_versions(previous.shard, version)
        return ShardManifest(previous.shard, self.collection, version, chunks, info)

    def touch(self, previous: ShardManifest, info: dict) -> ShardManifest:
        """Record a no-op sync (new timestamps, same chunks and version)."""
        info = {**previous.info, **info}
        self.store.write_json(info, *self._dir(previous.shard), layout.MANIFEST_FILE)
        return ShardManifest(previous.shard, self.collection, previous.version,
                             previous.chunks, info)

    def _drop_old_versions(self, shard: str, version: int) -> None:
        for name in self.store.list_dir(*self._dir(shard)):
            if name.startswith("chunks-") and name.endswith(".parquet"):
                if int(name[7:15]) < version - KEEP_OLD_VERSIONS:
                    self.store.delete(*self._dir(shard), name)

    def history(self, shard: str) -> pa.Table:
        """Every retired chunk version of a shard (HISTORY_SCHEMA)."""
        folder = (*self._dir(shard), "history")
        tables = [self.store.read_table(*folder, n) for n in self.store.list_dir(*folder)
                  if n.endswith(".parquet")]
        tables = [t.cast(HISTORY_SCHEMA) for t in tables if t is not None]
        return pa.concat_tables(tables) if tables else HISTORY_SCHEMA.empty_table()

    def write_pending(self, shard: str, pending: dict) -> None:
        self.store.write_json(pending, *self._dir(shard), layout.PENDING_FILE)

    def write_pending_docs(self, shard: str, pending: pa.Table) -> None:
        """Per pending doc, since when (the sync stamps retired versions with it) and how it
        changed (the policy weighs a doc the index does not hold yet by its shard)."""
        self.store.write_table(_pending_docs(pending), *self._dir(shard),
                               "pending_docs.parquet")

    def read_pending_docs(self, shard: str) -> pa.Table | None:
        """Pending docs as the last detection recorded them; None when absent or unreadable
        (detection rebuilds the file, so a damaged one never blocks the shard)."""
        try:
            table = self.store.read_table(*self._dir(shard), "pending_docs.parquet")
            return None if table is None else _pending_docs(table)
        except (StateError, KeyError, ValueError, pa.ArrowInvalid) as exc:
            log.warning("ignoring unreadable pending_docs.parquet of shard %s: %s", shard, exc)
            return None

    def pending_docs_for(self, manifest: ShardManifest) -> pa.Table | None:
        """The recorded pending docs, if recorded against this manifest version."""
        pending = self.read_pending(manifest.shard)
        if not pending or pending.get("manifest_version") != manifest.version:
            return None
        return self.read_pending_docs(manifest.shard)

    def read_pending(self, shard: str) -> dict | None:
        """The last detection summary; None when absent or unreadable (rebuilt by detect)."""
        try:
            return self.store.read_json(*self._dir(shard), layout.PENDING_FILE)
        except StateError as exc:
            log.warning("ignoring unreadable pending.json of shard %s: %s", shard, exc)
            return None

    def archive(self, shard: str, stamp: str) -> tuple[str, ...]:
        """Move a retired shard's state under `retired/<shard>-<stamp>/`: copy every file,
        then delete the shard folder (a crash between leaves the shard live, to retire again)."""
        target = layout.retired_shard_dir(self.collection, shard, stamp)
        for name in self.store.list_files(*self._dir(shard)):
            if name == layout.MANIFEST_FILE or name.startswith("lease.json"):
                continue
            data = self.store.read_bytes(*self._dir(shard), *name.split("/"))
            if data is not None:
                self.store.write_bytes(data, *target, *name.split("/"))
        manifest = self.store.read_bytes(*self._dir(shard), layout.MANIFEST_FILE)
        if manifest is not None:
            self.store.write_bytes(manifest, *target, layout.MANIFEST_FILE)
        self.store.delete_dir(*self._dir(shard))
        return target
