"""Per-shard staleness levels against SLAs: OK, WARN (part of the SLA used up), ERROR."""

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

    def sla_seconds(self, shard: str) -> float:
        return self.per_shard_hours.get(shard, self.sla_hours) * 3600

    @classmethod
    def from_settings(cls, settings: Settings) -> SlaConfig:
        """The SLA the policy plans with (`max_staleness_hours`, 24 h when unset), per-shard
        overrides (`per_shard_sla_hours`) and the WARN fraction."""
        return cls(settings.max_staleness_hours or DEFAULT_SLA_HOURS,
                   settings.alert_warn_fraction,
                   {k: float(v) for k, v in settings.per_shard_sla().items()})


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

    def as_dict(self) -> dict:
        value = asdict(self)
        value["level"] = self.level.name
        value["last_embedded_at"] = iso(self.last_embedded_at)
        return value


def evaluate(status: pa.Table, config: SlaConfig, now: datetime,
             shares: dict[str, float] | None = None) -> list[ShardStaleness]:
    """Levels for every shard of a status table (freshness.state.status.shard_status)."""
    result = []
    for row in status.to_pylist():
        shard, sla = row["shard"], config.sla_seconds(row["shard"])
        oldest, embedded = as_utc(row["oldest_pending_change"]), as_utc(row["last_embedded_at"])
        age = (now - oldest).total_seconds() if oldest and row["pending_docs"] else 0.0
        level, reason = Level.OK, "no change waiting longer than its SLA allows"
        if age >= sla:
            level, reason = Level.ERROR, f"oldest pending change waited {age / 3600:.2f} h " \
                f"(SLA {sla / 3600:.2f} h)"
        elif age >= config.warn_fraction * sla:
            level, reason = Level.WARN, f"oldest pending change waited {age / 3600:.2f} h, " \
                f"over {config.warn_fraction:.0%} of the {sla / 3600:.2f} h SLA"
        result.append(ShardStaleness(shard, level, reason, int(row["pending_docs"]), age, sla,
                                     embedded, (shares or {}).get(shard)))
    return result
