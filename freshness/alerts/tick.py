"""One alerting pass: evaluate every shard, advance incidents, add spikes, deliver in time.

The state between passes is a JSON-ready dict (a Dagster sensor cursor): open incidents, the
spikes already notified, and the outbox of deliveries that failed or did not fit the budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

import pyarrow as pa

from freshness.alerts.incidents import Notification, step
from freshness.alerts.sinks import deliver_pairs
from freshness.alerts.spikes import spike_notifications
from freshness.alerts.staleness import ShardStaleness, SlaConfig, evaluate

MAX_OUTBOX = 200


@dataclass
class AlertTick:
    """What one pass found and did."""

    evaluations: list[ShardStaleness]
    notifications: list[Notification]  # new this pass (incidents and spikes)
    undelivered: list[tuple[str, Notification]]  # kept in the outbox for the next pass
    state: dict

    def summary(self) -> str:
        stale = [e.shard for e in self.evaluations if e.level]
        return (f"{len(self.notifications)} notifications, {len(self.undelivered)} undelivered;"
                f" stale shards: {stale}")


def alert_tick(state: Mapping, status: pa.Table, config: SlaConfig, now: datetime, *,
               shares: Mapping[str, float] | None, latest_rates: Mapping[str, dict],
               sinks: Sequence, cooldown_seconds: float, ui_url: str,
               budget_s: float | None = None) -> AlertTick:
    """Evaluate `status` (freshness.state.status.shard_status) against the SLA, weighted by
    traffic `shares`; retry the outbox first, then send what is new, within `budget_s`."""
    evaluations = evaluate(status, config, now, dict(shares) if shares is not None else None)
    incidents, notifications = step(state.get("incidents", {}), evaluations, now,
                                    cooldown_seconds, ui_url)
    spikes, seen = spike_notifications(latest_rates, state.get("spikes", {}))
    by_name = {s.name: s for s in sinks}  # the outbox goes first: it waited longest
    queue = [(by_name[o["sink"]], Notification(**o["notification"]))
             for o in state.get("outbox", []) if o["sink"] in by_name]
    undelivered = deliver_pairs(queue + [(s, n) for n in notifications + spikes for s in sinks],
                                budget_s)
    return AlertTick(evaluations, notifications + spikes, undelivered, {
        "incidents": incidents, "spikes": seen,
        "outbox": [{"sink": s, "notification": asdict(n)}
                   for s, n in undelivered][-MAX_OUTBOX:]})

