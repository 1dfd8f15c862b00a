"""Shard embeddings: re-embed a shard's changed chunks into Qdrant (GPU pool, batched runs)."""


import dagster as dg

from assets.metadata import clean, timestamp
from assets.partitions import shard_partitions
from assets.resources import FreshnessResource
from assets.source_changes import source_changes
from freshness.pipeline.sync import sync


@dg.asset(
    group_name="freshness",
    partitions_def=shard_partitions,
    deps=[source_changes],
    pool="gpu",
    kinds={"qdrant", "python"},
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def shard_embeddings(context: dg.AssetExecutionContext,
                     freshness: FreshnessResource) -> dg.MaterializeResult:
    """Chunk vectors in Qdrant for a shard: only new or edited chunks are embedded."""
    shards = context.partition_keys
    result = sync(freshness.runtime(), shards, logger=context.log)
    failed = {s.shard: s.error for s in result.shards if not s.ok}
    if result.errors:
        failed["(run)"] = "; ".join(result.errors)
    if failed:
        raise dg.Failure(
            description=f"{len(failed)} shard(s) failed; their state was not advanced",
            metadata={"failed_shards": dg.MetadataValue.json(failed)},
        )
    totals = result.totals
    per_shard = {s.shard: dict(s.counts) for s in result.shards}
    info = result.shards[0].info if len(result.shards) == 1 else {}
    embedded = totals.get("chunks_embedded", 0)
    return dg.MaterializeResult(metadata=clean({
        "chunks_embedded": embedded,
        "chunks_kept": totals.get("chunks_kept", 0),
        "chunks_retired": totals.get("chunks_retired", 0),
        "orphans_deleted": totals.get("orphans_deleted", 0),
        "docs_added": totals.get("docs_added", 0),
        "docs_modified": totals.get("docs_modified", 0),
        "docs_deleted": totals.get("docs_deleted", 0),
        "docs_skipped": totals.get("docs_skipped", 0),
        "embed_seconds": round(result.embed_seconds, 3),
        "model_load_seconds": round(result.model_load_seconds, 3),
        "chunks_per_second": round(embedded / result.embed_seconds, 1)
        if result.embed_seconds else None,
        "collection": result.collection,
        "alias_switched": result.alias_switched,
        "retired_shards": dg.MetadataValue.json(result.retired_shards)
        if result.retired_shards else None,
        "last_embedded_at": timestamp(info.get("last_embedded_at")),
        "last_source_change_seen": timestamp(info.get("last_source_change_seen")),
        "per_shard": dg.MetadataValue.json(per_shard) if len(shards) > 1 else None,
        "dagster/row_count": totals.get("chunks_total", 0),
    }))
