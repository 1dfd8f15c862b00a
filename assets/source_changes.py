"""Source changes: scan every shard, record what is pending, register new shards."""


import dagster as dg
import pyarrow as pa

from assets.metadata import clean, table
from assets.partitions import shard_partitions
from assets.resources import FreshnessResource
from freshness.pipeline.detect import detect


@dg.asset(group_name="freshness", kinds={"duckdb"})
def source_changes(context: dg.AssetExecutionContext,
                   freshness: FreshnessResource) -> dg.MaterializeResult:
    """Documents added, modified or deleted in each shard since it was last embedded."""
    rt = freshness.runtime()
    discovery, pending = detect(rt)
    known = set(context.instance.get_dynamic_partitions(shard_partitions.name))
    new = [s for s in discovery.shards if s not in known]
    if new:
        context.instance.add_dynamic_partitions(shard_partitions.name, new)
    for skip in discovery.skips:
        context.log.warning("skipped %s: %s", skip.doc_id, skip.reason)
    rows = pa.Table.from_pylist([
        {k: p.as_dict()[k] for k in ("shard", "pending_docs", "added", "modified", "deleted",
                                     "skipped", "oldest_pending_change")} for p in pending])
    return dg.MaterializeResult(metadata=clean({
        "shards": len(pending),
        "new_shards": dg.MetadataValue.json(new),
        "pending_docs": sum(p.pending_docs for p in pending),
        "skipped_inputs": sum(p.skipped for p in pending) + len(discovery.skips),
        "pending_by_shard": table(rows) if rows.num_rows else None,
        "dagster/row_count": sum(p.pending_docs for p in pending),
    }))
