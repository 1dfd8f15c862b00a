"""The code location: assets, jobs, schedules, sensors and resources in one Definitions.

It sits above `assets/` and `sensors/` so that the dependency between them is one-way
(sensors use assets; assets never import sensors).
"""

import dagster as dg

from assets.checks import index_matches_manifests, shards_within_sla
from assets.jobs import hourly_reembed_sweep, reembed_job, scan_job
from assets.recency import (
    recency,
    recency_intraday,
    recency_today,
    recency_today_job,
    request_logs,
)
from assets.repair import repair_index_job
from assets.resources import FreshnessResource
from assets.shard_embeddings import shard_embeddings
from assets.shard_freshness import shard_freshness
from assets.source_changes import source_changes
from sensors.alert_sensor import staleness_alert_sensor
from sensors.demo_churn_sensor import churn_interval_seconds, demo_churn_sensor
from sensors.source_change_sensor import source_change_sensor

automation_sensor = dg.AutomationConditionSensorDefinition(
    "freshness_automation",
    target=dg.AssetSelection.assets(shard_freshness),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)

recency_job = dg.define_asset_job("recency_daily_job", selection=[recency])
recency_daily = dg.build_schedule_from_partitioned_job(
    recency_job, default_status=dg.DefaultScheduleStatus.RUNNING)

reconcile_checks_job = dg.define_asset_job(
    "reconcile_checks",
    selection=dg.AssetSelection.checks(shards_within_sla, index_matches_manifests),
    description="Evaluate the staleness and reconciliation checks.")
daily_reconciliation = dg.ScheduleDefinition(
    job=reconcile_checks_job, cron_schedule="30 3 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Full reconciliation of Qdrant against the manifests, daily.")

defs = dg.Definitions(
    assets=[source_changes, shard_embeddings, shard_freshness, request_logs, recency,
            recency_today],
    asset_checks=[shards_within_sla, index_matches_manifests],
    jobs=[reembed_job, scan_job, recency_job, recency_today_job, repair_index_job,
          reconcile_checks_job],
    schedules=[hourly_reembed_sweep, recency_daily, recency_intraday, daily_reconciliation],
    sensors=[source_change_sensor, staleness_alert_sensor, automation_sensor]
    + ([demo_churn_sensor] if churn_interval_seconds() else []),
    resources={"freshness": FreshnessResource.from_env()},
    executor=dg.in_process_executor,
)
