"""Staleness levels against SLAs, incidents, sinks (Slack, webhook, log) and Prometheus gauges."""
