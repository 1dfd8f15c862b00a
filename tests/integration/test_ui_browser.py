"""The demo as a user sees it: `dagster dev` on the demo settings, read by headless Chromium.

Starts `dagster dev` (SQLite DAGSTER_HOME, the demo corpus, the `make demo` settings) and waits
— at most READY_S from start — until the sensors alone have produced what the README promises:
per-partition counts that differ by shard, rate observations over time, today's recency with
its histogram, and the checks evaluated. It then asserts on the pages in Chromium and saves
screenshots; with FRESHNESS_UPDATE_SCREENSHOTS=1 it writes them over the README's
(docs/img/ui_*.png), else into the test's temporary folder, so a test run leaves the checkout
clean.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request

import pytest
from integration_helpers import REPO_ROOT, VENV_BIN, ProcessGroup, free_port, service_env, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
READY_S = 300
README_SHOTS = REPO_ROOT / "docs" / "img"
DEMO_SETTINGS = {  # as `make demo` (Makefile DEMO_ENV)
    "FRESHNESS_DEMO_CHURN_SECONDS": "90", "FRESHNESS_MAX_STALENESS_HOURS": "0.1",
    "FRESHNESS_BUDGET_GPU_SECONDS_PER_DAY": "30"}
EVENTS = """{ assetOrError(assetKey: {path: ["%s"]}) { ... on Asset {
  assetMaterializations(limit: 50) { partition metadataEntries { label
    ... on IntMetadataEntry { intValue } ... on FloatMetadataEntry { floatValue } } }
  assetObservations(limit: 50) { partition metadataEntries { label } } } } }"""
CHECKS = """{ assetNodes(assetKeys: [{path: ["shard_freshness"]}]) { assetChecksOrError {
  ... on AssetChecks { checks { name executionForLatestMaterialization {
    status evaluation { severity } } } } } } }"""


def _graphql(base: str, query: str) -> dict:
    request = urllib.request.Request(f"{base}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response).get("data") or {}
    except OSError:
        return {}


def _events(base: str, asset: str) -> dict:
    return (_graphql(base, EVENTS % asset).get("assetOrError") or {})


def _metadata(events: dict, first: bool = False) -> dict[str | None, dict]:
    """Per partition, the newest (or first) materialization's numeric metadata."""
    found: dict = {}
    materializations = events.get("assetMaterializations", [])  # newest first
    for m in reversed(materializations) if first else materializations:
        found.setdefault(m["partition"], {
            e["label"]: e.get("intValue", e.get("floatValue")) for e in m["metadataEntries"]})
    return found


def _ready(base: str) -> dict | None:
    """What the UI must show, once all of it is there."""
    shards = _events(base, "shard_embeddings")
    rates = _events(base, "source_changes").get("assetObservations", [])
    recency = _metadata(_events(base, "recency_today")).get(None, {})
    nodes = _graphql(base, CHECKS).get("assetNodes") or [{}]
    checks = {c["name"]: c["executionForLatestMaterialization"]
              for c in (nodes[0].get("assetChecksOrError") or {}).get("checks", [])}
    measured = rates and any(e["label"].startswith("stale_retrieval_rate/")
                             for e in rates[0]["metadataEntries"])  # after recency_today ran
    if len(_metadata(shards)) == 4 and len(rates) >= 2 and recency.get("served") and \
            measured and checks and all(checks.values()):
        return {"latest": _metadata(shards), "first": _metadata(shards, first=True),
                "rates": len(rates), "recency": recency, "checks": checks}
    return None


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not on PATH (apt-get install chromium)")
def test_the_demo_ui_shows_per_shard_truth_rates_and_recency(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]'")
    from freshness.demo.corpus import SHARDS, write_corpus

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "instance" / "dagster.yaml", home / "dagster.yaml")
    write_corpus(tmp_path / "corpus")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    server = ProcessGroup(
        [str(VENV_BIN / "dagster"), "dev", "-w", str(REPO_ROOT / "workspace.yaml"),
         "-h", "127.0.0.1", "-p", str(port)],
        service_env(DAGSTER_HOME=str(home), FRESHNESS_SOURCE_PATH=str(tmp_path / "corpus"),
                    FRESHNESS_STATE_ROOT=str(tmp_path / "state"),
                    FRESHNESS_INDEX_PATH=str(tmp_path / "qdrant"),
                    FRESHNESS_REQUEST_LOGS_PATH=str(tmp_path / "logs" / "{date}.jsonl"),
                    **DEMO_SETTINGS),
        tmp_path / "dagster_dev.log")
    try:
        state = wait_for(lambda: _ready(base), READY_S, 5.0, "the demo's sensors and runs",
                         alive=server)
        ready_s = time.monotonic() - started
        update = os.environ.get("FRESHNESS_UPDATE_SCREENSHOTS") == "1"
        SHOTS = README_SHOTS if update else tmp_path / "screenshots"  # noqa: N806
        SHOTS.mkdir(parents=True, exist_ok=True)
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu",
                                                "--disable-dev-shm-usage", "--disable-quic"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(30_000)
            page.goto(f"{base}/asset-groups/freshness")
            page.get_by_text("shard_embeddings").first.wait_for()
            sync_api.expect(page.get_by_text("Loading...")).to_have_count(0, timeout=90_000)
            page.screenshot(path=SHOTS / "ui_lineage.png")

            page.goto(f"{base}/assets/shard_embeddings?view=partitions&partition=handbook")
            for key in ("docs_total", "embed_seconds", "chunks_per_second",
                        "change_rate_per_doc_day", "pending_age_seconds", "traffic_share"):
                page.get_by_text(key, exact=True).first.wait_for()
            page.screenshot(path=SHOTS / "ui_partition.png")

            page.goto(f"{base}/assets/source_changes?view=overview")
            page.get_by_role("button", name="Plots").click()
            page.get_by_text("change_rate_per_doc_day/api").first.evaluate(
                "title => title.scrollIntoView({block: 'start'})")
            assert page.locator("canvas").count() >= 4  # one chart per shard and reading
            page.screenshot(path=SHOTS / "ui_rates.png")

            page.goto(f"{base}/assets/recency_today?view=overview")
            page.get_by_text("[Show Markdown]").first.click()
            image = page.get_by_role("dialog").locator("img").first
            image.wait_for()
            assert image.evaluate("i => i.complete && i.naturalWidth") > 0
            page.screenshot(path=SHOTS / "ui_recency.png")
            browser.close()
    finally:
        server.stop()

    print(f"ready {ready_s:.0f} s after start")  # the README quotes it
    assert ready_s < READY_S
    docs = {shard: meta["docs_total"] for shard, meta in state["latest"].items()}
    assert docs == {shard: len(topics) for shard, topics in SHARDS.items()}  # differ by shard
    first = state["first"]  # the first build: one batched run over all four shards
    assert {s: m["chunks_embedded"] for s, m in first.items()} == docs  # one chunk per doc
    assert first["handbook"]["embed_seconds"] > first["faq"]["embed_seconds"] > 0
    assert state["recency"]["stale_retrieval_rate"] is not None
    checks = state["checks"]
    assert checks["index_matches_manifests"]["status"] == "SUCCEEDED"  # nothing drifted
    assert all(c["status"] != "EXECUTION_FAILED" for c in checks.values())
