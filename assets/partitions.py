"""Partitions: one dynamic partition per shard, registered as sources reveal new shards."""

import dagster as dg

shard_partitions = dg.DynamicPartitionsDefinition(name="shards")
