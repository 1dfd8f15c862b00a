"""Change detection in DuckDB: which docs changed, and which chunks need embedding.

Two levels: a doc-level full outer join of the source listing against the manifest (hashes
only, no content), then, for the changed docs only, a chunk-level plan that keeps every chunk
whose point already exists and embeds just the new ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa

from freshness.state.manifest import HISTORY_SCHEMA, MANIFEST_SCHEMA
from freshness.util.duck import registered

DOC_CHANGES_SCHEMA = pa.schema(
    [("doc_id", pa.string()), ("change", pa.string()), ("updated_at", pa.timestamp("us", "UTC"))]
)


def diff_docs(listing: pa.Table, manifest: pa.Table, complete: bool,
              keep_ids: set[str]) -> pa.Table:
    """Per doc: added / modified / deleted / unchanged (DOC_CHANGES_SCHEMA).

    A doc missing from the listing counts as deleted only when the listing is complete and the
    doc was not skipped (unreadable docs keep their indexed version).
    """
    keep = pa.table({"doc_id": pa.array(sorted(keep_ids), pa.string())})
    with registered(listing=listing, manifest=manifest, keep=keep) as con:
        return _diff_sql(con, complete)


def _diff_sql(con, complete: bool) -> pa.Table:
    return con.sql(
        f"""
        WITH indexed AS (SELECT DISTINCT doc_id, doc_hash FROM manifest)
        SELECT coalesce(l.doc_id, i.doc_id) AS doc_id,
               CASE WHEN i.doc_id IS NULL THEN 'added'
                    WHEN l.doc_id IS NULL THEN 'deleted'
                    WHEN l.doc_hash <> i.doc_hash THEN 'modified'
                    ELSE 'unchanged' END AS change,
               l.updated_at
        FROM listing l FULL OUTER JOIN indexed i ON l.doc_id = i.doc_id
        WHERE NOT (l.doc_id IS NULL AND ({'false' if complete else 'true'}
                   OR i.doc_id IN (SELECT doc_id FROM keep)))
        ORDER BY doc_id
        """
    ).to_arrow_table().cast(DOC_CHANGES_SCHEMA)


@dataclass
class ChunkPlan:
    """The next manifest of a shard, and the index writes that get there."""

    next_chunks: pa.Table  # MANIFEST_SCHEMA; embedded_at null where a point must be embedded
    to_embed: pa.Table  # point_id, doc_id, chunk_index, text, content_hash, source_updated_at
    payload_updates: pa.Table  # point_id, chunk_index: kept points whose position moved
    retired: pa.Table  # HISTORY_SCHEMA rows leaving the index
    orphans: list[str]  # points in the index that no manifest row claims


def plan_chunks(manifest: pa.Table, doc_changes: pa.Table, docs: pa.Table, new_chunks: pa.Table,
                present_ids: set[str], now: datetime,
                pending_since: pa.Table | None = None) -> ChunkPlan:
    """Merge the old manifest with the re-chunked changed docs.

    `docs` has (doc_id, doc_hash, updated_at) of the changed docs as read; `new_chunks` their
    chunks. A row is embedded when its point is absent from the index (`present_ids`): new or
    edited chunks normally, plus points lost behind our back (the caller re-reads those docs,
    see `damaged_docs`). A retired version is stamped `superseded_at` = when its doc first
    changed as detection saw it (`pending_since`), else the new version's update time.
    """
    present = pa.table({"point_id": pa.array(sorted(present_ids), pa.string())})
    pending = pending_since if pending_since is not None else \
        pa.table({"doc_id": pa.array([], pa.string()),
                  "since": pa.array([], pa.timestamp("us", "UTC"))})
    with registered(manifest=manifest, changes=doc_changes, docs=docs, new_chunks=new_chunks,
                    present=present, pending=pending) as con:
        try:
            return _plan_sql(con, present_ids, now)
        finally:
            con.sql("DROP TABLE IF EXISTS next")


def _plan_sql(con, present_ids: set[str], now: datetime) -> ChunkPlan:
    con.sql(
        """
        CREATE OR REPLACE TEMP TABLE next AS
        WITH kept AS (  -- docs whose old rows stay as they are
            SELECT m.* FROM manifest m
            WHERE m.doc_id NOT IN (SELECT doc_id FROM changes WHERE change <> 'unchanged')
               OR m.doc_id IN (SELECT doc_id FROM changes WHERE change IN ('added', 'modified')
                               AND doc_id NOT IN (SELECT doc_id FROM docs))
        ),
        rechunked AS (
            SELECT c.doc_id, d.doc_hash, c.chunk_index, c.content_hash, c.point_id, c.n_tokens,
                   coalesce(m.source_updated_at, d.updated_at) AS source_updated_at,
                   m.embedded_at, m.chunk_index AS old_chunk_index, c.text
            FROM new_chunks c JOIN docs d USING (doc_id)
            LEFT JOIN manifest m ON m.point_id = c.point_id
        )
        SELECT doc_id, doc_hash, chunk_index, content_hash, point_id, n_tokens,
               source_updated_at, embedded_at, NULL::INTEGER AS old_chunk_index,
               NULL::VARCHAR AS text FROM kept
        UNION ALL BY NAME SELECT * FROM rechunked
        """
    )
    to_embed = con.sql(
        """SELECT point_id, doc_id, chunk_index, text, content_hash, n_tokens, source_updated_at
           FROM next WHERE point_id NOT IN (SELECT point_id FROM present)"""
    ).to_arrow_table()
    payload_updates = con.sql(
        """SELECT point_id, chunk_index FROM next
           WHERE point_id IN (SELECT point_id FROM present)
             AND old_chunk_index IS NOT NULL AND old_chunk_index <> chunk_index"""
    ).to_arrow_table()
    retired = con.sql(
        """SELECT m.*, coalesce(p.since, d.updated_at, ?::TIMESTAMPTZ) AS superseded_at,
                  ?::TIMESTAMPTZ AS retired_at
           FROM manifest m LEFT JOIN docs d USING (doc_id) LEFT JOIN pending p USING (doc_id)
           WHERE m.point_id NOT IN (SELECT point_id FROM next)""",
        params=[now, now],
    ).to_arrow_table().cast(HISTORY_SCHEMA)
    next_chunks = con.sql(
        """SELECT doc_id, doc_hash, chunk_index, content_hash, point_id, n_tokens,
                  source_updated_at,
                  CASE WHEN point_id IN (SELECT point_id FROM present) THEN embedded_at END
                    AS embedded_at
           FROM next ORDER BY doc_id, chunk_index"""
    ).to_arrow_table().cast(MANIFEST_SCHEMA)
    orphans = sorted(present_ids - set(next_chunks.column("point_id").to_pylist()))
    return ChunkPlan(next_chunks, to_embed, payload_updates, retired, orphans)


def damaged_docs(manifest: pa.Table, present_ids: set[str]) -> set[str]:
    """Docs with a manifest row whose point is missing from the index (drift to repair)."""
    present = pa.table({"point_id": pa.array(sorted(present_ids), pa.string())})
    with registered(manifest=manifest, present=present) as con:
        rows = con.sql("SELECT DISTINCT doc_id FROM manifest "
                       "WHERE point_id NOT IN (SELECT point_id FROM present)").fetchall()
    return {r[0] for r in rows}
