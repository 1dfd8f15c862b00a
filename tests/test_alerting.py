"""Staleness alerts with a driven clock, a real webhook server, restarts, and metrics."""

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

import sensors.alert_sensor as alert_sensor_module
from assets.resources import FreshnessResource
from freshness.alerts.incidents import step
from freshness.alerts.metrics import write_textfile
from freshness.alerts.sinks import WebhookSink, deliver
from freshness.alerts.staleness import Level, SlaConfig, evaluate
from freshness.pipeline.detect import detect
from freshness.pipeline.sync import sync
from freshness.state.status import shard_status
from freshness.util.timeutil import as_utc
from sensors.alert_sensor import staleness_alert_sensor


class Webhook:
    """A local HTTP endpoint: fails the first `failures` POSTs with 500, then accepts."""

    def __init__(self, failures: int = 0) -> None:
        self.failures, self.received, self.attempts = failures, [], 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.attempts += 1
                if outer.attempts <= outer.failures:
                    self.send_response(500)
                else:
                    outer.received.append(json.loads(body))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def webhook():
    hooks = []

    def make(failures: int = 0) -> Webhook:
        hooks.append(Webhook(failures))
        return hooks[-1]

    yield make
    for hook in hooks:
        hook.close()


def pending_edit(rt, corpus):
    sync(rt)
    (corpus / "alpha" / "pears.md").write_text("# Pears\n\nPears ripen off the tree.")
    detect(rt)
    status = shard_status(rt.shard_state())
    return status, as_utc(status.to_pylist()[0]["oldest_pending_change"])


def test_warn_then_error_once_each_then_one_resolve(corpus, make_runtime, webhook):
    rt, hook = make_runtime(corpus), webhook(failures=1)
    status, t0 = pending_edit(rt, corpus)
    sla = SlaConfig(sla_hours=2.0, warn_fraction=0.5)
    sink = WebhookSink(hook.url, retries=2, backoff_s=0.01)
    state, sent = {}, []
    for minutes in (10, 61, 70, 119, 121, 150, 179):
        now = t0 + timedelta(minutes=minutes)
        state, out = step(state, evaluate(status, sla, now), now, 6 * 3600, "http://ui")
        assert deliver([sink], out) == []
        sent += [(minutes, n.kind, n.level) for n in out]
    assert sent == [(61, "open", "WARN"), (121, "escalate", "ERROR")]
    assert hook.attempts == 3 and len(hook.received) == 2  # the 500 was retried, sent once
    first = hook.received[0]
    assert first["shard"] == "alpha" and first["pending_docs"] == 1
    assert first["sla_hours"] == 2.0 and "partition=alpha" in first["url"]

    sync(rt)  # re-embed: fresh again
    fresh = shard_status(rt.shard_state())
    later = t0 + timedelta(hours=4)
    state, out = step(state, evaluate(fresh, sla, later), later, 6 * 3600, "http://ui")
    assert [n.kind for n in out] == ["resolve"] and state == {}
    state, out = step(state, evaluate(fresh, sla, later), later, 6 * 3600, "http://ui")
    assert out == []


def test_cooldown_renotifies_an_open_incident(corpus, make_runtime):
    rt = make_runtime(corpus)
    status, t0 = pending_edit(rt, corpus)
    sla, state, kinds = SlaConfig(sla_hours=1.0), {}, []
    for hours in (2, 3, 8.5, 9):
        now = t0 + timedelta(hours=hours)
        state, out = step(state, evaluate(status, sla, now), now, 6 * 3600, "http://ui")
        kinds += [n.kind for n in out]
    assert kinds == ["open", "renotify"]


def test_metrics_textfile(corpus, make_runtime, tmp_path):
    rt = make_runtime(corpus)
    status, t0 = pending_edit(rt, corpus)
    evaluations = evaluate(status, SlaConfig(sla_hours=1.0), t0 + timedelta(hours=2))
    assert evaluations[0].level == Level.ERROR
    path = tmp_path / "freshness.prom"
    write_textfile(evaluations, t0, str(path))
    text = path.read_text()
    assert 'freshness_shard_pending_docs{shard="alpha"} 1.0' in text
    assert 'freshness_shard_stale{shard="alpha"} 2.0' in text
    assert 'freshness_shard_stale{shard="beta"} 0.0' in text


def test_sensor_alerts_once_survives_restart_and_retries_a_failing_sink(
        corpus, tmp_path, webhook, monkeypatch):
    freshness = FreshnessResource(source_path=str(corpus), state_root=str(tmp_path / "state"),
                                  index_path=str(tmp_path / "qdrant"), device="cpu")
    rt = freshness.runtime()
    _, t0 = pending_edit(rt, corpus)
    down, up = webhook(failures=10**6), webhook()
    clock = {"now": t0 + timedelta(hours=3)}
    monkeypatch.setattr(alert_sensor_module, "utc_now", lambda: clock["now"])

    def tick(url: str, cursor: str | None):
        configured = FreshnessResource(**{
            **freshness.model_dump(), "max_staleness_hours": 1.0, "alert_webhook_url": url,
            "alert_sink_retries": 1, "alert_sink_backoff_s": 0.01,
            "ui_url": "http://dagster:3000"})
        context = dg.build_sensor_context(cursor=cursor, resources={"freshness": configured})
        staleness_alert_sensor(context)
        return context.cursor

    cursor = tick(down.url, None)
    assert down.attempts == 2 and json.loads(cursor)["outbox"]  # retried, then kept
    clock["now"] += timedelta(minutes=1)
    cursor = tick(up.url, cursor)  # the outbox goes out once the sink works
    cursor = tick(up.url, cursor)  # a restarted sensor resumes from its stored cursor
    assert [m["kind"] for m in up.received] == ["open"]
    assert up.received[0]["url"].startswith("http://dagster:3000/assets/shard_embeddings")
    assert json.loads(cursor)["outbox"] == []


def test_sla_check_reports_each_shard_with_severity(corpus, tmp_path):
    from assets.checks import shards_within_sla

    freshness = FreshnessResource(source_path=str(corpus), state_root=str(tmp_path / "state"),
                                  index_path=str(tmp_path / "qdrant"), device="cpu")
    pending_edit(freshness.runtime(), corpus)
    relaxed = shards_within_sla(FreshnessResource(**{**freshness.model_dump(),
                                                     "max_staleness_hours": 24.0}))
    assert relaxed.passed
    strict = shards_within_sla(FreshnessResource(**{**freshness.model_dump(),
                                                    "max_staleness_hours": 1e-9}))
    assert not strict.passed and strict.severity == dg.AssetCheckSeverity.ERROR
    assert strict.metadata["stale_shards"].value == ["alpha"]
    rows = {r.data["shard"]: r.data for r in strict.metadata["shards"].value.records}
    assert rows["alpha"]["level"] == "ERROR" and rows["beta"]["level"] == "OK"
