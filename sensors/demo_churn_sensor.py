"""Demo only: an editor that changes a doc now and then, and the queries that read the corpus.

Enabled when FRESHNESS_DEMO_CHURN_SECONDS is set (make demo sets it). Every tick it edits one
doc of the synthetic demo corpus, rewrites today's synthetic request log (retrievals of an
edited doc are stale until its shard is re-embedded, then fresh again) and requests a refresh
of `recency_today`, so the policy, the alerts and the recency plots have something to show
within minutes. Never use it on real data.
"""

from datetime import datetime, time, timezone

import dagster as dg

from assets.recency import recency_today_job, request_logs_for_day
from assets.resources import FreshnessResource
from freshness.config import Settings
from freshness.demo.corpus import mutate
from freshness.demo.logs import write_demo_logs
from freshness.errors import FreshnessError
from freshness.util.timeutil import utc_now


def churn_interval_seconds() -> int | None:
    """FRESHNESS_DEMO_CHURN_SECONDS: the demo sensor exists only when it is set."""
    return Settings.from_env().demo_churn_seconds


@dg.sensor(job=recency_today_job, minimum_interval_seconds=churn_interval_seconds() or 120,
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="DEMO: edits one synthetic doc per tick, writes synthetic request logs "
                       "and refreshes today's recency.")
def demo_churn_sensor(context: dg.SensorEvaluationContext,
                      freshness: FreshnessResource) -> dg.SensorResult:
    rt = freshness.runtime()
    touched = mutate(rt.settings.source_path, edits=1)
    logs, now = 0, utc_now()
    if rt.settings.request_logs_path:
        start = datetime.combine(now.date(), time(), tzinfo=timezone.utc)
        try:
            logs = write_demo_logs(rt.shard_state(), request_logs_for_day(rt.settings,
                                                                          str(now.date())),
                                   n_requests=500, start=start, end=now)
        except FreshnessError as exc:  # nothing indexed yet
            context.log.info("no demo logs yet: %s", exc)
    message = f"edited {touched}; wrote {logs} synthetic requests"
    if not logs:
        return dg.SensorResult(skip_reason=message)
    context.log.info(message)
    return dg.SensorResult(run_requests=[dg.RunRequest(
        run_key=f"recency-today:{now.isoformat(timespec='seconds')}",
        tags={"freshness/trigger": "demo"})])
