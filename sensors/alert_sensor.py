"""Staleness alert sensor: translates one core alerting pass into a Dagster sensor result.

The pass (freshness.alerts.tick) keeps incident state and undelivered notifications in the
sensor cursor, so a restarted daemon neither repeats nor loses an alert, and delivers within a
time budget so a dead webhook never times the tick out. Each tick also records every shard's
change rate, pending age, stale level and stale-retrieval rate: as an observation of its
`shard_embeddings` partition (shown with the partition's metadata) and as one observation of
`source_changes` with a `<reading>/<shard>` key per shard, which its Plots view draws over
time, one line per shard; and the `shards_within_sla` check's verdict, so the check's status in
the UI follows the tick rather than waiting for the next run or the daily schedule.
"""

import json

import dagster as dg

from assets.checks import shards_within_sla, sla_outcome
from assets.partitions import shard_partitions
from assets.resources import FreshnessResource
from assets.shard_embeddings import shard_embeddings
from assets.source_changes import source_changes
from freshness.alerts.metrics import shard_readings, shard_series, write_textfile
from freshness.alerts.sinks import build_sinks
from freshness.alerts.staleness import SlaConfig
from freshness.alerts.tick import alert_tick
from freshness.recency.report import shard_stale_rates
from freshness.state.rate_history import RateHistory
from freshness.state.status import shard_status
from freshness.state.traffic import traffic_shares
from freshness.util.timeutil import utc_now


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Alerts when a shard's traffic-weighted staleness exceeds its SLA, on "
                       "escalation, after a cooldown, when it is fresh again, and on change-rate "
                       "spikes; records per-shard rates and staleness as partition observations.")
def staleness_alert_sensor(context: dg.SensorEvaluationContext,
                           freshness: FreshnessResource) -> dg.SensorResult:
    rt, now = freshness.runtime(), utc_now()
    settings = rt.settings
    status = shard_status(rt.shard_state(), now)
    history = RateHistory(rt.store)
    latest = {s: history.latest(s)
              for s in sorted(set(history.shards()) | set(status["shard"].to_pylist()))}
    tick = alert_tick(json.loads(context.cursor) if context.cursor else {}, status,
                      SlaConfig.from_settings(settings), now, shares=traffic_shares(rt.store),
                      latest_rates=latest, sinks=build_sinks(settings, context.log),
                      cooldown_seconds=settings.alert_cooldown_hours * 3600,
                      ui_url=settings.ui_url, budget_s=settings.alert_delivery_budget_s)
    if settings.metrics_textfile:
        write_textfile(tick.evaluations, now, settings.metrics_textfile)
    known = set(context.instance.get_dynamic_partitions(shard_partitions.name))
    readings = shard_readings(tick.evaluations, latest, shard_stale_rates(rt.store))
    events = [dg.AssetObservation(shard_embeddings.key, partition=shard, metadata=values)
              for shard, values in readings.items() if shard in known]
    if readings:  # one series per shard in source_changes' plots (a partition's are latest-only)
        events.append(dg.AssetObservation(source_changes.key, metadata=shard_series(readings)))
    # the SLA check's status follows every tick, not only runs and the daily schedule
    check = shards_within_sla.check_key
    events.append(dg.AssetCheckEvaluation(asset_key=check.asset_key, check_name=check.name,
                                          **sla_outcome(tick.evaluations)))
    return dg.SensorResult(
        asset_events=events,
        cursor=json.dumps(tick.state), skip_reason=tick.summary())
