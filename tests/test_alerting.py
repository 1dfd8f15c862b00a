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
    assert 'freshness_shard_traffic_weight{shard="alpha"} 1.0' in text  # no logs: age alone


def test_sensor_alerts_once_survives_restart_and_retries_a_failing_sink(
        corpus, tmp_path, webhook, monkeypatch):
    freshness = FreshnessResource(source_path=str(corpus), state_root=str(tmp_path / "state"),
                                  index_path=str(tmp_path / "qdrant"), device="cpu",
                                  max_staleness_hours=1.0)  # the policy's SLA is the alerts'
    rt = freshness.runtime()
    _, t0 = pending_edit(rt, corpus)
    down, up = webhook(failures=10**6), webhook()
    clock = {"now": t0 + timedelta(hours=3)}
    monkeypatch.setattr(alert_sensor_module, "utc_now", lambda: clock["now"])
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("shards", ["alpha", "beta"])

    def tick(url: str, cursor: str | None) -> dg.SensorResult:
        configured = FreshnessResource(**{
            **freshness.model_dump(), "max_staleness_hours": 1.0, "alert_webhook_url": url,
            "alert_sink_retries": 1, "alert_sink_backoff_s": 0.01,
            "ui_url": "http://dagster:3000"})
        context = dg.build_sensor_context(instance=instance, cursor=cursor,
                                          resources={"freshness": configured})
        return staleness_alert_sensor(context)

    result = tick(down.url, None)
    cursor = result.cursor
    assert down.attempts == 2 and json.loads(cursor)["outbox"]  # retried, then kept
    clock["now"] += timedelta(minutes=1)
    cursor = tick(up.url, cursor).cursor  # the outbox goes out once the sink works
    cursor = tick(up.url, cursor).cursor  # a restarted sensor resumes from its stored cursor
    assert [m["kind"] for m in up.received] == ["open"]
    assert up.received[0]["url"].startswith("http://dagster:3000/assets/shard_embeddings")
    assert json.loads(cursor)["outbox"] == []

    observed = {e.partition: {k: v.value for k, v in e.metadata.items()}  # the Plots tab
                for e in result.asset_events if e.asset_key.path == ["shard_embeddings"]}
    (series,) = [e for e in result.asset_events if e.asset_key.path == ["source_changes"]]
    assert series.metadata["stale_level/alpha"].value == 2
    assert series.metadata["change_rate_per_doc_day/beta"].value > 0
    assert set(observed) == {"alpha", "beta"}
    assert observed["alpha"]["stale_level"] == 2 and observed["beta"]["stale_level"] == 0
    assert observed["alpha"]["pending_docs"] == 1
    assert observed["alpha"]["pending_age_seconds"] == pytest.approx(3 * 3600, abs=1)
    assert observed["alpha"]["change_rate_per_doc_day"] > 0
    assert "traffic_share" not in observed["alpha"]  # no request logs analysed yet

    # the SLA check's verdict rides every tick, and the instance records it as the check's status
    (check,) = [e for e in result.asset_events if isinstance(e, dg.AssetCheckEvaluation)]
    assert check.check_name == "shards_within_sla" and not check.passed
    assert check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["stale_shards"].value == ["alpha"]
    instance.report_runless_asset_event(check)
    key = dg.AssetCheckKey(dg.AssetKey("shard_freshness"), "shards_within_sla")
    (record,) = instance.event_log_storage.get_asset_check_execution_history(key, limit=5)
    assert record.event.dagster_event.event_specific_data.passed is False


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


def test_severity_follows_traffic_exposure_with_a_floor_for_unread_shards(corpus, make_runtime):
    rt = make_runtime(corpus)
    sync(rt)
    for shard, name in (("alpha", "pears.md"), ("beta", "boats.md")):
        (corpus / shard / name).write_text(f"# {name}\n\nRewritten at the same moment.")
    detect(rt)
    status = shard_status(rt.shard_state())
    t0 = max(as_utc(r["oldest_pending_change"]) for r in status.to_pylist())
    sla = SlaConfig(sla_hours=1.0, warn_fraction=0.5, traffic_floor=0.25)

    def levels(hours: float, shares: dict | None) -> dict[str, str]:
        return {e.shard: e.level.name
                for e in evaluate(status, sla, t0 + timedelta(hours=hours), shares)}

    # same age, no logs: age alone
    assert levels(0.6, None) == {"alpha": "WARN", "beta": "WARN"}
    # alpha serves all reads (weight 2): ERROR at half the SLA; beta, unread, sits at the floor
    assert levels(0.6, {"alpha": 1.0, "beta": 0.0}) == {"alpha": "ERROR", "beta": "OK"}
    assert levels(2.1, {"alpha": 1.0, "beta": 0.0}) == {"alpha": "ERROR", "beta": "WARN"}
    assert levels(4.1, {"alpha": 1.0, "beta": 0.0}) == {"alpha": "ERROR", "beta": "ERROR"}
    (alpha,) = [e for e in evaluate(status, sla, t0 + timedelta(hours=1), {"alpha": 1.0})
                if e.shard == "alpha"]
    assert alpha.traffic_weight == 2.0
    assert alpha.exposure_seconds == pytest.approx(2 * alpha.pending_age_seconds)
    assert "traffic weight 2.00" in alpha.reason


def test_a_black_holed_webhook_cannot_hold_the_tick_past_its_budget():
    """A socket that accepts connections and never answers (the kernel completes the
    handshake into the backlog; nobody reads): every delivery waits, none may block past
    the budget, and what did not go out stays for the next tick."""
    import socket
    import time

    from freshness.alerts.incidents import Notification
    from freshness.alerts.tick import alert_tick

    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)
    try:
        sink = WebhookSink(f"http://127.0.0.1:{hole.getsockname()[1]}/hook", retries=3,
                           backoff_s=0.5, timeout_s=10.0)
        notes = [Notification("open", f"s{i}", "WARN", "stale", {}, f"k{i}") for i in range(5)]
        started = time.monotonic()
        failed = deliver([sink], notes, budget_s=1.5)
        took = time.monotonic() - started
        assert took < 2.5 and [n.key for _, n in failed] == [f"k{i}" for i in range(5)]

        state = {"outbox": [{"sink": "webhook", "notification": vars(n)} for n in notes]}
        started = time.monotonic()
        tick = alert_tick(state, shard_status_empty(), SlaConfig(), as_utc("2026-01-01"),
                          shares=None, latest_rates={}, sinks=[sink], cooldown_seconds=3600,
                          ui_url="http://ui", budget_s=1.0)
        assert time.monotonic() - started < 2.0
        assert [o["notification"]["key"] for o in tick.state["outbox"]] == \
            [f"k{i}" for i in range(5)]  # kept, in order, for the next tick
    finally:
        hole.close()


def shard_status_empty():
    from freshness.state.status import STATUS_SCHEMA

    return STATUS_SCHEMA.empty_table()
