"""Alerting configuration: SLAs, sinks (URLs are secrets: EnvVar only), UI link, metrics file."""

import os

import dagster as dg

from freshness.alerts.sinks import LogSink, WebhookSink
from freshness.alerts.staleness import SlaConfig


class AlertsResource(dg.ConfigurableResource):
    """Where staleness alerts go and when a shard counts as stale."""

    sla_hours: float | None = None  # default: FRESHNESS_MAX_STALENESS_HOURS, else 24
    per_shard_sla_hours_json: str | None = None  # e.g. '{"linux": 6}'
    warn_fraction: float = 0.5
    cooldown_hours: float = 6.0
    slack_webhook_url: str | None = None
    webhook_url: str | None = None
    ui_url: str = "http://127.0.0.1:3000"
    metrics_textfile: str | None = None
    sink_retries: int = 3
    sink_backoff_s: float = 0.5

    def sla(self, default_hours: float | None) -> SlaConfig:
        return SlaConfig.from_settings(self.sla_hours or default_hours,
                                       self.per_shard_sla_hours_json, self.warn_fraction)

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
            sla_hours=number("FRESHNESS_SLA_HOURS"),
            per_shard_sla_hours_json=os.getenv("FRESHNESS_PER_SHARD_SLA_HOURS"),
            cooldown_hours=number("FRESHNESS_ALERT_COOLDOWN_HOURS") or 6.0,
            slack_webhook_url=secret("FRESHNESS_SLACK_WEBHOOK_URL"),
            webhook_url=secret("FRESHNESS_ALERT_WEBHOOK_URL"),
            ui_url=os.getenv("FRESHNESS_UI_URL", "http://127.0.0.1:3000"),
            metrics_textfile=os.getenv("FRESHNESS_METRICS_TEXTFILE"),
        )
