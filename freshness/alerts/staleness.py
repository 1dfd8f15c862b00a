"""Per-shard staleness levels against SLAs: OK, WARN (part of the SLA used up), ERROR.

Severity follows stale-retrieval exposure, not age alone: a shard's pending age is weighted
by how much it is read relative to an average shard (traffic share × number of shards, from
the request logs). A shard read like the average alerts at its SLA; one read twice as much
at half of it; one nobody reads at SLA / `traffic_floor`. Without request logs every weight
is 1 (age alone).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import IntEnum

import pyarrow as pa

from freshness.config import Settings
from freshness.util.timeutil import as_utc, iso

DEFAULT_SLA_HOURS = 24.0  # alerts' SLA when max_staleness_hours is unset


class Level(IntEnum):
    OK = 0
    WARN = 1
    ERROR = 2


@dataclass(frozen=True)
class SlaConfig:
    """How long a source change may wait before its shard is stale."""

    sla_hours: float = DEFAULT_SLA_HOURS
    warn_fraction: float = 0.5  # WARN once this share of the SLA has passed
    per_shard_hours: dict[str, float] = field(default_factory=dict)
    traffic_floor: float = 0.25  # lowest traffic weight: an unread shard alerts at SLA / this

    def sla_seconds(self, shard: str) -> float:
        return self.per_shard_hours.get(shard, self.sla_hours) * 3600

    @classmethod
    def from_settings(cls, settings: Settings) -> SlaConfig:
        """The SLA the policy plans with (`max_staleness_hours`, 24 h when unset), per-shard
        overrides (`per_shard_sla_hours`), the WARN fraction and the traffic floor."""
        return cls(settings.max_staleness_hours or DEFAULT_SLA_HOURS,
                   settings.alert_warn_fraction,
                   {k: float(v) for k, v in settings.per_shard_sla().items()},
                   settings.alert_traffic_floor)

    def traffic_weight(self, share: float | None, shards: int) -> float:
        """How much a shard is read relative to an average shard (1.0 when unknown), never
        below the floor, so that a shard nobody reads still alerts, later."""
        return 1.0 if share is None else max(self.traffic_floor, share * shards)


@dataclass(frozen=True)
class ShardStaleness:
    """One shard's staleness at one moment."""

    shard: str
    level: Level
    reason: str
    pending_docs: int
    pending_age_seconds: float
    sla_seconds: float
    last_embedded_at: datetime | None
    traffic_share: float | None
    traffic_weight: float = 1.0
    exposure_seconds: float = 0.0  # pending age × traffic weight: what the SLA is held to

    def as_dict(self) -> dict:
        value = asdict(self)
        value["level"] = self.level.name
        value["last_embedded_at"] = iso(self.last_embedded_at)
        return value


def evaluate(status: pa.Table, config: SlaConfig, now: datetime,
             shares: dict[str, float] | None = None) -> list[ShardStaleness]:
    """Levels for every shard of a status table (freshness.state.status.shard_status);
    `shares` are the shards' traffic shares (None: no request logs analysed yet)."""
    result, rows = [], status.to_pylist()
    for row in rows:
        shard, sla = row["shard"], config.sla_seconds(row["shard"])
        oldest, embedded = as_utc(row["oldest_pending_change"]), as_utc(row["last_embedded_at"])
        age = (now - oldest).total_seconds() if oldest and row["pending_docs"] else 0.0
        share = None if shares is None else shares.get(shard, 0.0)
        weight = config.traffic_weight(share, len(rows))
        exposure = age * weight
        waited = f"oldest pending change waited {age / 3600:.2f} h" + (
            "" if share is None else f" at traffic weight {weight:.2f} ({share:.1%} of reads)")
        level, reason = Level.OK, "no change waiting longer than its SLA allows"
        if row.get("state_error"):  # freshness unknown: as bad as past the SLA
            level, reason = Level.ERROR, f"state unreadable: {row['state_error']}"
        elif exposure >= sla:
            level, reason = Level.ERROR, f"{waited}: past the {sla / 3600:.2f} h SLA"
        elif exposure >= config.warn_fraction * sla:
            level, reason = Level.WARN, f"{waited}: over {config.warn_fraction:.0%} of the " \
                f"{sla / 3600:.2f} h SLA"
        result.append(ShardStaleness(shard, level, reason, int(row["pending_docs"]), age, sla,
                                     embedded, share, weight, exposure))
    return result
