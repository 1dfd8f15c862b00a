"""Where notifications go: Slack-compatible and generic JSON webhooks, or a logger.

A delivery is retried with exponential backoff; a sink that still fails raises
`DeliveryError`, which the caller records (and retries next time) — it never propagates into
a sensor. Webhook URLs are secrets: they are never logged or shown.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from freshness.alerts.incidents import Notification
from freshness.config import Settings
from freshness.errors import FreshnessError

log = logging.getLogger("freshness.alerts")


class DeliveryError(FreshnessError):
    """A sink failed after its retries."""


@dataclass
class WebhookSink:
    """POST JSON to a URL: `{"text": …}` for Slack (`slack=True`), the full payload otherwise."""

    url: str
    slack: bool = False
    retries: int = 3
    backoff_s: float = 0.5
    timeout_s: float = 10.0

    @property
    def name(self) -> str:
        return "slack" if self.slack else "webhook"

    def __repr__(self) -> str:
        return f"WebhookSink(name={self.name!r}, url='***')"

    def _body(self, n: Notification) -> bytes:
        if self.slack:
            return json.dumps({"text": n.text}).encode()
        return json.dumps({"kind": n.kind, "shard": n.shard, "level": n.level, "text": n.text,
                           "event_key": n.key, **n.payload}).encode()

    def send(self, n: Notification) -> None:
        request = urllib.request.Request(self.url, data=self._body(n), method="POST",
                                         headers={"Content-Type": "application/json"})
        for attempt in range(self.retries + 1):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    if 200 <= response.status < 300:
                        return
                    problem = f"HTTP {response.status}"
            except urllib.error.HTTPError as exc:
                problem = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:
                problem = type(exc).__name__
            if attempt < self.retries:
                time.sleep(self.backoff_s * 2**attempt)
        raise DeliveryError(f"{self.name} sink failed after {self.retries + 1} attempts "
                            f"({problem}); check its URL variable")


@dataclass
class LogSink:
    """Writes notifications to a logger (the Dagster run or sensor log)."""

    logger: logging.Logger | None = None
    name: str = "log"

    def send(self, n: Notification) -> None:
        (self.logger or log).warning("%s", n.text)


def deliver(sinks: list, notifications: list[Notification]) -> list[tuple[str, Notification]]:
    """Send each notification to each sink; return the (sink name, notification) that failed."""
    failed = []
    for n in notifications:
        for sink in sinks:
            try:
                sink.send(n)
            except DeliveryError as exc:
                log.error("alert %s for shard %s not delivered: %s", n.kind, n.shard, exc)
                failed.append((sink.name, n))
    return failed


def build_sinks(settings: Settings, logger=None) -> list:
    """The Dagster/Python log, plus the Slack and JSON webhooks that settings name."""
    sinks: list = [LogSink(logger)]
    for url, slack in ((settings.slack_webhook_url, True), (settings.alert_webhook_url, False)):
        if url:
            sinks.append(WebhookSink(url, slack, settings.alert_sink_retries,
                                     settings.alert_sink_backoff_s))
    return sinks
