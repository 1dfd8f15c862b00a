"""Per-shard freshness gauges for Prometheus, written for the node exporter's textfile collector."""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from freshness.alerts.staleness import ShardStaleness


def registry_for(evaluations: list[ShardStaleness], now: datetime,
                 registry: CollectorRegistry | None = None) -> CollectorRegistry:
    """A registry holding one sample per shard of each freshness gauge."""
    registry = registry or CollectorRegistry()
    labels = ["shard"]
    age = Gauge("freshness_shard_pending_age_seconds",
                "Age of the oldest source change not yet embedded (0 when none)", labels,
                registry=registry)
    pending = Gauge("freshness_shard_pending_docs", "Changed docs waiting to be embedded",
                    labels, registry=registry)
    embedded = Gauge("freshness_shard_last_embedded_timestamp_seconds",
                     "Unix time of the shard's last embedding run that changed the index",
                     labels, registry=registry)
    stale = Gauge("freshness_shard_stale", "0 fresh, 1 WARN, 2 ERROR (past its SLA)", labels,
                  registry=registry)
    sla = Gauge("freshness_shard_sla_seconds", "The shard's staleness SLA", labels,
                registry=registry)
    exposure = Gauge("freshness_shard_exposure_seconds", "Pending age x traffic weight: what "
                     "the SLA is held to", labels, registry=registry)
    weight = Gauge("freshness_shard_traffic_weight", "Reads relative to an average shard "
                   "(1 without request logs; never below the floor)", labels, registry=registry)
    for s in evaluations:
        exposure.labels(s.shard).set(s.exposure_seconds)
        weight.labels(s.shard).set(s.traffic_weight)
        age.labels(s.shard).set(s.pending_age_seconds)
        pending.labels(s.shard).set(s.pending_docs)
        embedded.labels(s.shard).set(s.last_embedded_at.timestamp() if s.last_embedded_at
                                     else 0)
        stale.labels(s.shard).set(int(s.level))
        sla.labels(s.shard).set(s.sla_seconds)
    Gauge("freshness_evaluated_timestamp_seconds", "When these gauges were computed",
          registry=registry).set(now.timestamp())
    return registry


def write_textfile(evaluations: list[ShardStaleness], now: datetime, path: str) -> None:
    """Write the gauges for the node exporter's textfile collector (atomic rename)."""
    write_to_textfile(path, registry_for(evaluations, now))


def shard_readings(evaluations: list[ShardStaleness], latest_rates: dict[str, dict],
                   stale_rates: dict[str, float] | None = None) -> dict[str, dict[str, float]]:
    """Per shard, the numbers worth plotting over time: change rate, pending age and docs,
    stale level, traffic weight and exposure, and the measured stale-retrieval rate."""
    readings = {}
    for e in evaluations:
        values: dict[str, float] = {
            "pending_docs": e.pending_docs, "pending_age_seconds": round(e.pending_age_seconds, 1),
            "stale_level": int(e.level), "traffic_weight": round(e.traffic_weight, 4),
            "exposure_seconds": round(e.exposure_seconds, 1)}
        rate = latest_rates.get(e.shard)
        if rate:
            values["change_rate_per_doc_day"] = round(rate["rate_per_doc_day"], 6)
            values["changes_last_poll"] = rate["changed"]
        if e.traffic_share is not None:
            values["traffic_share"] = round(e.traffic_share, 4)
        if stale_rates and stale_rates.get(e.shard) is not None:
            values["stale_retrieval_rate"] = round(stale_rates[e.shard], 4)
        readings[e.shard] = values
    return readings


SERIES = ("change_rate_per_doc_day", "pending_age_seconds", "stale_level",
          "stale_retrieval_rate")


def shard_series(readings: dict[str, dict[str, float]],
                 keys: tuple[str, ...] = SERIES) -> dict[str, float]:
    """The readings of every shard as one flat record, `<key>/<shard>`: one time series per
    shard and key where a UI plots a record's numbers over time."""
    return {f"{key}/{shard}": values[key] for shard, values in sorted(readings.items())
            for key in keys if key in values}
