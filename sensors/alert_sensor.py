"""Staleness alert sensor: one incident per stale shard, notified once, resolved when fresh.

Incident state and undelivered notifications live in the sensor cursor (stored by Dagster),
so a restarted daemon neither repeats nor loses an alert. A failing sink is retried with
backoff and, if it still fails, on the next tick — it never fails the sensor.
"""

import json
from dataclasses import asdict

import dagster as dg

from assets.resources import FreshnessResource
from freshness.alerts.incidents import Notification, step
from freshness.alerts.metrics import write_textfile
from freshness.alerts.sinks import build_sinks, deliver
from freshness.alerts.staleness import SlaConfig, evaluate
from freshness.policy.cadence import traffic_shares
from freshness.state.rate_history import RateHistory
from freshness.state.status import shard_status
from freshness.util.timeutil import iso, utc_now

MAX_OUTBOX = 200


def _spikes(rt, seen: dict) -> tuple[list[Notification], dict]:
    """A notification for each shard whose latest rate poll flagged a change-rate spike."""
    history, out, seen = RateHistory(rt.store), [], dict(seen)
    for shard in history.shards():
        rows = history.load(shard)
        if not rows.num_rows or not rows["spike"][-1].as_py():
            continue
        polled = iso(rows["polled_at"][-1].as_py())
        if seen.get(shard) == polled:
            continue
        seen[shard] = polled
        rate = rows["rate_per_doc_day"][-1].as_py()
        out.append(Notification(
            "spike", shard, "WARN",
            f"[retrieval-freshness] change-rate spike in shard {shard}: "
            f"{rows['changed'][-1].as_py()} docs changed in the last poll, rate now "
            f"{rate:.4f} changes/doc/day", {"shard": shard, "polled_at": polled,
                                            "rate_per_doc_day": rate},
            f"{shard}:{polled}:spike"))
    return out, seen


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Alerts when a shard's pending changes exceed its SLA, on escalation, "
                       "after a cooldown, and when it is fresh again; also change-rate spikes.")
def staleness_alert_sensor(context: dg.SensorEvaluationContext,
                           freshness: FreshnessResource) -> dg.SkipReason:
    rt, now = freshness.runtime(), utc_now()
    settings = rt.settings
    cursor = json.loads(context.cursor) if context.cursor else {}
    evaluations = evaluate(shard_status(rt.shard_state(), now),
                           SlaConfig.from_settings(settings), now,
                           traffic_shares(rt.store))
    incidents, notifications = step(cursor.get("incidents", {}), evaluations, now,
                                    settings.alert_cooldown_hours * 3600, settings.ui_url)
    spikes, seen = _spikes(rt, cursor.get("spikes", {}))
    sinks = {s.name: s for s in build_sinks(settings, context.log)}
    retry = [(o["sink"], Notification(**o["notification"])) for o in cursor.get("outbox", [])]
    failed = []
    for sink_name, n in retry:
        if sink_name in sinks:
            failed += deliver([sinks[sink_name]], [n])
    failed += deliver(list(sinks.values()), notifications + spikes)
    if settings.metrics_textfile:
        write_textfile(evaluations, now, settings.metrics_textfile)
    context.update_cursor(json.dumps({
        "incidents": incidents, "spikes": seen,
        "outbox": [{"sink": s, "notification": asdict(n)} for s, n in failed][-MAX_OUTBOX:],
    }))
    stale = [e.shard for e in evaluations if e.level]
    return dg.SkipReason(f"{len(notifications) + len(spikes)} notifications, "
                         f"{len(failed)} undelivered; stale shards: {stale}")
