"""Shard freshness: the per-shard last-update timestamps, refreshed after every embedding run."""


import dagster as dg
import pyarrow.compute as pc

from assets.metadata import table, timestamp
from assets.resources import FreshnessResource
from assets.shard_embeddings import shard_embeddings
from freshness.state.status import shard_status


@dg.asset(
    group_name="freshness",
    deps=[shard_embeddings],
    kinds={"duckdb"},
    automation_condition=dg.AutomationCondition.eager(),
)
def shard_freshness(freshness: FreshnessResource) -> dg.MaterializeResult:
    """Per shard: last source change seen, last embedded, and the oldest change still pending."""
    rt = freshness.runtime()
    status = shard_status(rt.shard_state())
    ages = status["pending_age_seconds"]
    oldest = pc.min(status["oldest_pending_change"]).as_py() if status.num_rows else None
    return dg.MaterializeResult(metadata={
        "shards": status.num_rows,
        "shards_with_pending_changes": int(pc.sum(pc.greater(status["pending_docs"], 0)).as_py()
                                           or 0),
        "shards_with_unreadable_state": status.num_rows - status["state_error"].null_count,
        "max_pending_age_seconds": float(pc.max(ages).as_py() or 0) if status.num_rows else 0.0,
        "serving_collection": rt.serving_collection() or "",
        "shard_timestamps": table(status),
        **({"oldest_pending_change": timestamp(oldest)} if oldest else {}),
        "dagster/row_count": status.num_rows,
    })
