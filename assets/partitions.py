"""Partitions: one dynamic partition per shard, registered as sources reveal new shards.

A partition key is the shard name verbatim, nested names included (`tenants/acme/kb`): every
name `freshness.util.shard_names` accepts is a valid Dagster key (no control characters, no
`...`); the UI links in alerts URL-encode it.
"""

import dagster as dg

shard_partitions = dg.DynamicPartitionsDefinition(name="shards")
