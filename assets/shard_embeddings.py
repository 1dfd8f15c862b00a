"""Shard embeddings: re-embed a shard's changed chunks into Qdrant (GPU pool, batched runs)."""


import dagster as dg

from assets.metadata import clean, timestamp
from assets.partitions import shard_partitions
from assets.resources import FreshnessResource
from assets.source_changes import source_changes
from freshness.pipeline.sync import ShardResult, SyncResult, sync

_COUNTS = ("chunks_embedded", "chunks_kept", "chunks_retired", "orphans_deleted", "docs_added",
           "docs_modified", "docs_deleted", "docs_skipped", "docs_total", "chunks_total")


def shard_metadata(result: SyncResult, shard: ShardResult, model: str) -> dict:
    """One partition's own materialization metadata: its counts, its share of the embedding
    time, and the run it was part of (how many shards shared the model load)."""
    counts, seconds = shard.counts, shard.embed_seconds
    embedded = counts.get("chunks_embedded", 0)
    return clean({
        **{k: counts.get(k, 0) for k in _COUNTS},
        "embed_seconds": round(seconds, 3),
        "chunks_per_second": round(embedded / seconds, 1) if seconds else None,
        "device": result.device or "none (nothing embedded)",
        "model": model,
        "skipped": dg.MetadataValue.json([s.__dict__ for s in shard.skips]) if shard.skips
        else None,
        "run_shards": len(result.shards),
        "run_model_load_seconds": round(result.model_load_seconds, 3),
        "collection": result.collection,
        "alias_switched": result.alias_switched,
        "retired": True if shard.info.get("retired") else None,  # gone from the source
        "last_embedded_at": timestamp(shard.info.get("last_embedded_at")),
        "last_source_change_seen": timestamp(shard.info.get("last_source_change_seen")),
        "dagster/row_count": counts.get("chunks_total", 0),
    })


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
    rt = freshness.runtime()
    result = sync(rt, context.partition_keys, logger=context.log)
    failed = {s.shard: s.error for s in result.shards if not s.ok}
    if result.errors:
        failed["(run)"] = "; ".join(result.errors)
    if failed:
        raise dg.Failure(
            description=f"{len(failed)} shard(s) failed; their state was not advanced",
            metadata={"failed_shards": dg.MetadataValue.json(failed)},
        )
    model = f"{rt.model_spec.name}@{rt.model_spec.revision}"
    for shard in result.shards:  # a batched run: each partition gets its own numbers
        context.add_asset_metadata(shard_metadata(result, shard, model), partition_key=shard.shard)
    return dg.MaterializeResult()
