"""One shard's unreadable state does not blind status and alerts to every other shard: its row
says what is wrong and how to fix it, its alert level is ERROR (freshness unknown), the CLI
exits 1, and `freshness repair` brings the row back."""

import json
from datetime import timedelta

from freshness.alerts.staleness import Level, SlaConfig, evaluate
from freshness.cli.main import main
from freshness.integrity.repair import repair
from freshness.pipeline.sync import sync
from freshness.state import layout
from freshness.state.status import shard_status
from freshness.util.timeutil import utc_now


def test_a_corrupt_manifest_is_reported_for_its_shard_only(corpus, make_runtime, tmp_path,
                                                            capsys):
    rt = make_runtime(corpus)
    assert sync(rt).ok
    before = {r["shard"]: r for r in shard_status(rt.shard_state()).to_pylist()}
    assert set(before) == {"alpha", "beta"} and before["alpha"]["docs"] > 0
    manifest = tmp_path / "state" / "/".join(layout.shard_dir(rt.collection, "alpha")) / \
        layout.MANIFEST_FILE
    assert manifest.exists()
    manifest.write_text("{ not json")

    rows = {r["shard"]: r for r in shard_status(rt.shard_state()).to_pylist()}
    assert rows["beta"]["state_error"] is None
    assert rows["beta"]["docs"] == before["beta"]["docs"]  # the healthy shard is intact
    error = rows["alpha"]["state_error"]
    assert str(manifest) in error and "freshness repair" in error

    levels = {s.shard: s for s in evaluate(shard_status(rt.shard_state()),
                                           SlaConfig(sla_hours=2.0), utc_now()
                                           + timedelta(minutes=1))}
    assert levels["alpha"].level is Level.ERROR and "state unreadable" in levels["alpha"].reason
    assert levels["beta"].level is Level.OK

    args = ["status", "--path", str(corpus), "--state-root", str(tmp_path / "state"),
            "--index-path", str(tmp_path / "qdrant"), "--device", "cpu"]
    capsys.readouterr()
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "alpha" in out and "state unreadable" in out and "beta" in out
    assert main([*args, "--json"]) == 1
    shards = {r["shard"]: r for r in json.loads(capsys.readouterr().out)["shards"]}
    assert shards["alpha"]["state_error"] and not shards["beta"]["state_error"]

    assert repair(rt)["ok"]
    after = {r["shard"]: r for r in shard_status(rt.shard_state()).to_pylist()}
    assert after["alpha"]["state_error"] is None
    assert after["alpha"]["docs"] == before["alpha"]["docs"]
    assert main(args) == 0
