"""The daily recency asset: materialized for one day, with its metadata and Parquet outputs."""

import argparse
import base64
import json
from datetime import datetime, timedelta, timezone

import dagster as dg
import duckdb
import pyarrow as pa
import pytest

from assets.recency import recency, request_logs
from assets.resources import FreshnessResource
from assets.shard_embeddings import shard_embeddings
from assets.source_changes import source_changes
from freshness.cli.histogram import add_parser, run
from freshness.state.manifest import HISTORY_SCHEMA, MANIFEST_SCHEMA

DAY = datetime(2026, 1, 1, tzinfo=timezone.utc)
OLD, NEW, OTHER = (f"00000000-0000-4000-8000-00000000000{i}" for i in range(3))


def h(hours: float) -> datetime:
    return DAY + timedelta(hours=hours)


def chunk(doc_id, point, updated, embedded):
    return {"doc_id": doc_id, "doc_hash": point, "chunk_index": 0, "content_hash": point,
            "point_id": point, "n_tokens": 5, "source_updated_at": updated,
            "embedded_at": embedded}


@pytest.fixture
def resources(tmp_path) -> dict:
    """State for shards alpha (a.md edited at 02:00, embedded at 05:00) and beta; a day of logs."""
    freshness = FreshnessResource(state_root=str(tmp_path / "state"),
                                  index_path=str(tmp_path / "qdrant"), device="cpu")
    state = freshness.runtime().shard_state()
    old = chunk("a.md", OLD, h(-10), h(-9))
    for shard, chunks in (("alpha", [old]), ("beta", [chunk("b.md", OTHER, h(-30), h(-29))])):
        state.commit(state.load(shard), pa.Table.from_pylist(chunks, MANIFEST_SCHEMA),
                     HISTORY_SCHEMA.empty_table(), {})
    state.commit(state.load("alpha"), pa.Table.from_pylist(
        [chunk("a.md", NEW, h(2), h(5))], MANIFEST_SCHEMA), pa.Table.from_pylist(
        [{**old, "superseded_at": h(2), "retired_at": h(5)}], HISTORY_SCHEMA), {})
    logs = tmp_path / "logs" / "2026-01-01.jsonl"
    logs.parent.mkdir()
    lines = [{"request_id": f"r{i}", "ts": h(q).isoformat(), "route": route,
              "retrieved": [{"point_id": point}]} for i, (q, point, route) in enumerate(
        [(1, OLD, "chat"), (3, OLD, "chat"), (6, NEW, "search"), (7, OTHER, "chat"),
         (30, NEW, "chat")])]  # the last one is the next day: outside this partition
    logs.write_text("\n".join(json.dumps(line) for line in lines) + "\n{broken\n")
    return {"freshness": FreshnessResource(**{
        **freshness.model_dump(), "request_logs_path": str(tmp_path / "logs" / "{date}.jsonl")})}


def test_recency_materializes_a_day_with_metadata_and_parquet(resources, tmp_path):
    result = dg.materialize([recency], partition_key="2026-01-01", resources=resources,
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success
    meta = result.asset_materializations_for_node("recency")[0].metadata
    assert meta["retrievals"].value == 4 and meta["served"].value == 4
    assert meta["quarantined_records"].value == 1 and meta["unresolved"].value == 0
    assert meta["stale_retrieval_rate"].value == 0.25
    assert meta["retrieval_weighted_freshness"].value == 0.75
    assert meta["traffic_weights"].value == {"alpha": 0.75, "beta": 0.25}
    shards = {r.data["shard"]: r.data for r in meta["per_shard"].value.records}
    assert shards["alpha"]["retrievals"] == 3 and shards["alpha"]["stale_retrievals"] == 1
    assert shards["beta"]["stale_rate"] == 0.0
    markdown = meta["histogram"].value
    png = base64.b64decode(markdown.split("base64,")[1].split(")")[0])
    assert png.startswith(b"\x89PNG") and "| 6-24h | 2 | 1 | 2 |" in markdown
    folder = meta["output"].value
    assert folder.endswith("recency/day=2026-01-01")
    day = duckdb.sql(f"""SELECT day, scope, key, retrievals FROM read_parquet(
        '{tmp_path}/state/recency/*/summary.parquet', hive_partitioning = true)
        WHERE scope = 'all'""").fetchall()
    assert [(str(d), s, k, n) for d, s, k, n in day] == [("2026-01-01", "all", "all", 4)]
    served = duckdb.sql(f"SELECT count(*) FILTER (stale_served), count(*) FROM "
                        f"'{folder}/retrievals.parquet'").fetchall()
    assert served == [(1, 4)]
    assert "broken" in (tmp_path / "state/recency/day=2026-01-01/quarantine.jsonl").read_text()


def test_unset_logs_path_fails_with_the_fix(resources):
    resources["freshness"] = FreshnessResource(**{**resources["freshness"].model_dump(),
                                                  "request_logs_path": None})
    with pytest.raises(dg.Failure, match="FRESHNESS_REQUEST_LOGS_PATH"):
        dg.materialize([recency], partition_key="2026-01-01", resources=resources,
                       instance=dg.DagsterInstance.ephemeral())


def test_definitions_with_recency_load():
    defs = dg.Definitions(
        assets=[source_changes, shard_embeddings, request_logs, recency],
        resources={"freshness": FreshnessResource()})
    dg.Definitions.validate_loadable(defs)
    spec = defs.get_assets_def("recency")
    assert spec.partitions_def.start == datetime(2025, 1, 1, tzinfo=timezone.utc)
    assert {k.path[-1] for k in spec.dependency_keys} == {"shard_embeddings", "request_logs"}


def test_histogram_cli_prints_json_and_text(resources, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="freshness")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["histogram", "--logs", str(tmp_path / "logs"), "--json",
                              "--state-root", str(tmp_path / "state"),
                              "--until", "2026-01-02"])
    rt = resources["freshness"].runtime()
    assert run(args, rt) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["counts"]["served"] == 4 and out["ingest"]["quarantined"] == 1
    assert out["quarantine"].startswith(str(tmp_path / "state" / "recency" / "quarantine"))
    args.json = False
    assert run(args, rt) == 0
    text = capsys.readouterr().out
    assert "stale-retrieval rate 25.0%" in text and "alpha" in text and "6-24h" in text


def test_demo_churn_feeds_recency_today_and_the_shard_observations(tmp_path, embedder):
    """The demo loop in one go: churn edits a doc and writes today's logs, `recency_today`
    turns them into a plot and per-shard stale rates, the alert sensor observes them."""
    from assets.recency import recency_today
    from freshness.demo.corpus import write_corpus
    from freshness.pipeline.sync import sync
    from freshness.recency.report import shard_stale_rates
    from sensors.alert_sensor import staleness_alert_sensor
    from sensors.demo_churn_sensor import demo_churn_sensor

    write_corpus(tmp_path / "corpus", docs_per_shard=1)
    freshness = FreshnessResource(source_path=str(tmp_path / "corpus"),
                                  state_root=str(tmp_path / "state"),
                                  index_path=str(tmp_path / "qdrant"), device="cpu",
                                  request_logs_path=str(tmp_path / "logs" / "{date}.jsonl"))
    resources = {"freshness": freshness}
    sync(freshness.runtime())
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("shards", ["api", "faq", "handbook", "runbooks"])

    churn = demo_churn_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    (request,) = churn.run_requests
    assert request.run_key.startswith("recency-today:")
    result = dg.materialize([recency_today], resources=resources, instance=instance)
    meta = result.asset_materializations_for_node("recency_today")[0].metadata
    assert meta["served"].value > 0 and meta["stale_retrieval_rate"].value is not None
    assert meta["histogram"].value.count("data:image/png;base64,") == 2  # timeline, histogram
    rates = shard_stale_rates(freshness.runtime().store)
    assert set(rates) == {"api", "faq", "handbook", "runbooks"}

    alerts = staleness_alert_sensor(dg.build_sensor_context(
        instance=instance, resources={"freshness": freshness}))
    observed = {e.partition: e.metadata for e in alerts.asset_events if e.partition}
    assert set(observed) == set(rates)
    for shard, values in observed.items():
        assert values["stale_retrieval_rate"].value == pytest.approx(rates[shard], abs=1e-4)
        assert 0.0 <= values["traffic_share"].value <= 1.0


def test_recency_records_doc_and_shard_traffic_for_the_policy(resources):
    from freshness.state.traffic import read_traffic

    dg.materialize([recency], partition_key="2026-01-01", resources=resources,
                   instance=dg.DagsterInstance.ephemeral())
    traffic = read_traffic(resources["freshness"].runtime().store)
    assert traffic.shards == {"alpha": 0.75, "beta": 0.25}
    assert traffic.doc_weights("alpha", ["a.md"], 1)[0] == pytest.approx(0.75)


def test_recency_learns_the_shares_over_the_days_it_has_seen(resources, tmp_path):
    """A week later beta is the busier shard: the shares follow, the older day weighing half;
    materializing a day again replaces its counts instead of adding them."""
    from freshness.state.traffic import read_traffic

    week = DAY + timedelta(days=7)
    (tmp_path / "logs" / "2026-01-08.jsonl").write_text("\n".join(json.dumps({
        "request_id": f"w{i}", "ts": (week + timedelta(hours=i + 1)).isoformat(),
        "route": "chat", "retrieved": [{"point_id": point}]})
        for i, point in enumerate([OTHER, OTHER, OTHER, NEW])) + "\n")
    def materialize(day: str):
        dg.materialize([recency], partition_key=day, resources=resources,
                       instance=dg.DagsterInstance.ephemeral())
        return read_traffic(resources["freshness"].runtime().store)

    assert materialize("2026-01-01").shards == {"alpha": 0.75, "beta": 0.25}
    for day in ("2026-01-08", "2026-01-01"):  # the second time: a backfill of the first day
        traffic = materialize(day)
        # 2026-01-01 (alpha 3, beta 1) at half weight, 2026-01-08 (alpha 1, beta 3) in full
        assert traffic.retrievals == pytest.approx(0.5 * 4 + 4)
        assert traffic.shards == pytest.approx({"alpha": 2.5 / 6, "beta": 3.5 / 6})
