"""Alerting configuration: sinks (URLs are secrets: EnvVar only), UI link, metrics file.

The SLA itself is the policy's: Settings.max_staleness_hours (FRESHNESS_MAX_STALENESS_HOURS)."""

import os

import dagster as dg

from freshness.alerts.sinks import LogSink, WebhookSink
from freshness.alerts.staleness import SlaConfig


class AlertsResource(dg.ConfigurableResource):
    """Where staleness alerts go and when a shard counts as stale."""

    per_shard_sla_hours_json: str | None = None  # e.g. '{"linux": 6}'
    warn_fraction: float = 0.5
    cooldown_hours: float = 6.0
    slack_webhook_url: str | None = None
    webhook_url: str | None = None
    ui_url: str = "http://127.0.0.1:3000"
    metrics_textfile: str | None = None
    sink_retries: int = 3
    sink_backoff_s: float = 0.5
    delivery_budget_s: float = 20.0  # per sensor tick (Dagster times a tick out at 60 s)
    traffic_floor: float = 0.25  # an unread shard alerts at SLA / traffic_floor

    def sla(self, sla_hours: float | None) -> SlaConfig:
        """The SLA config for the policy's `max_staleness_hours` (24 h when unset)."""
        return SlaConfig.from_settings(sla_hours, self.per_shard_sla_hours_json,
                                       self.warn_fraction, self.traffic_floor)

    def sinks(self, logger=None) -> list:
        sinks: list = [LogSink(logger)]
        if self.slack_webhook_url:
            sinks.append(WebhookSink(self.slack_webhook_url, True, self.sink_retries,
                                     self.sink_backoff_s))
        if self.webhook_url:
            sinks.append(WebhookSink(self.webhook_url, False, self.sink_retries,
                                     self.sink_backoff_s))
        return sinks

    @classmethod
    def from_env(cls) -> "AlertsResource":
        """Sink URLs as EnvVar (never shown in the UI); the rest from FRESHNESS_* variables."""
        def secret(name: str):
            return dg.EnvVar(name) if os.getenv(name) else None

        def number(name: str) -> float | None:
            return float(os.environ[name]) if os.getenv(name) else None

        return cls(
            per_shard_sla_hours_json=os.getenv("FRESHNESS_PER_SHARD_SLA_HOURS"),
            cooldown_hours=number("FRESHNESS_ALERT_COOLDOWN_HOURS") or 6.0,
            delivery_budget_s=number("FRESHNESS_ALERT_DELIVERY_BUDGET_S") or 20.0,
            traffic_floor=number("FRESHNESS_ALERT_TRAFFIC_FLOOR") or 0.25,
            slack_webhook_url=secret("FRESHNESS_SLACK_WEBHOOK_URL"),
            webhook_url=secret("FRESHNESS_ALERT_WEBHOOK_URL"),
            ui_url=os.getenv("FRESHNESS_UI_URL", "http://127.0.0.1:3000"),
            metrics_textfile=os.getenv("FRESHNESS_METRICS_TEXTFILE"),
        )
