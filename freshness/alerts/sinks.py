"""Where notifications go: Slack-compatible and generic JSON webhooks, or a logger.

A delivery is retried with exponential backoff; a sink that still fails raises
`DeliveryError`, which the caller records (and retries next time) — it never propagates into
a sensor. `deliver` takes a time budget: every attempt's socket timeout and backoff fits in
what is left of it, and what does not go out in time stays in the outbox for the next tick.
Webhook URLs are secrets: they are never logged or shown.
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

    def send(self, n: Notification, deadline: float | None = None) -> None:
        """POST with retries; `deadline` (time.monotonic) bounds every wait."""
        request = urllib.request.Request(self.url, data=self._body(n), method="POST",
                                         headers={"Content-Type": "application/json"})
        problem = "no time left in the tick's delivery budget"
        for attempt in range(self.retries + 1):
            timeout = self.timeout_s if deadline is None else \
                min(self.timeout_s, deadline - time.monotonic())
            if timeout <= 0:
                break
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    if 200 <= response.status < 300:
                        return
                    problem = f"HTTP {response.status}"
            except urllib.error.HTTPError as exc:
                problem = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:
                problem = type(exc).__name__
            if attempt < self.retries:
                pause = self.backoff_s * 2**attempt
                time.sleep(pause if deadline is None
                           else max(0.0, min(pause, deadline - time.monotonic())))
        raise DeliveryError(f"{self.name} sink failed ({problem}); check its URL variable")


@dataclass
class LogSink:
    """Writes notifications to a logger (the Dagster run or sensor log)."""

    logger: logging.Logger | None = None
    name: str = "log"

    def send(self, n: Notification, deadline: float | None = None) -> None:
        (self.logger or log).warning("%s", n.text)


def deliver(sinks: list, notifications: list[Notification], budget_s: float | None = None
            ) -> list[tuple[str, Notification]]:
    """Send each notification to each sink within `budget_s` seconds (None: no limit);
    return the (sink name, notification) pairs that failed or did not fit in the budget."""
    return deliver_pairs([(sink, n) for n in notifications for sink in sinks], budget_s)


def deliver_pairs(pairs: list[tuple[object, Notification]], budget_s: float | None = None
                  ) -> list[tuple[str, Notification]]:
    """Send each (sink, notification) in order, all within one budget (see `deliver`)."""
    deadline = None if budget_s is None else time.monotonic() + budget_s
    failed, late = [], 0
    for sink, n in pairs:
        if deadline is not None and time.monotonic() >= deadline:
            failed.append((sink.name, n))
            late += 1
            continue
        try:
            sink.send(n, deadline)
        except DeliveryError as exc:
            log.error("alert %s for shard %s not delivered: %s", n.kind, n.shard, exc)
            failed.append((sink.name, n))
    if late:
        log.warning("%d deliveries kept for the next tick: the %.1f s budget is spent", late,
                    budget_s)
    return failed


def build_sinks(settings: Settings, logger=None) -> list:
    """The Dagster/Python log, plus the Slack and JSON webhooks that settings name."""
    sinks: list = [LogSink(logger)]
    for url, slack in ((settings.slack_webhook_url, True), (settings.alert_webhook_url, False)):
        if url:
            sinks.append(WebhookSink(url, slack, settings.alert_sink_retries,
                                     settings.alert_sink_backoff_s))
    return sinks
