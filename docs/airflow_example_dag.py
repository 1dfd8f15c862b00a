"""Airflow example: keep the retrieval index fresh from Airflow, through the `freshness` CLI.

Every 30 minutes: list the shards with pending changes (`freshness detect --json`), sync each
one in its own task (`freshness sync --shard NAME`, dynamically mapped), then fail loudly if a
shard is still stale (`freshness status --json`). The core runs as a separate program, so the
Airflow environment needs no torch: point FRESHNESS_BIN at the `freshness` entry point of the
environment where retrieval-freshness is installed, and set the FRESHNESS_* variables
(source, state root, Qdrant URL) for the workers.

No shell text is ever built from data: the sync command is a constant and the shard name
reaches it as an environment variable; the other commands run as argument lists.

Settings (environment of the Airflow workers):
  FRESHNESS_BIN                 path of the `freshness` command (default: `freshness` on PATH)
  FRESHNESS_MAX_PENDING_AGE_S   a shard with a change pending longer than this is stale (7200)
  FRESHNESS_AIRFLOW_POOL        Airflow pool limiting concurrent syncs (default_pool; create a
                                pool with 1 slot per GPU, e.g. `airflow pools set freshness_gpu 1
                                "re-embedding"`)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone

FRESHNESS_BIN = os.environ.get("FRESHNESS_BIN", "freshness")
MAX_PENDING_AGE_S = float(os.environ.get("FRESHNESS_MAX_PENDING_AGE_S", "7200"))
SYNC_POOL = os.environ.get("FRESHNESS_AIRFLOW_POOL", "default_pool")
# Constant shell text: "$FRESHNESS_SHARD" is expanded by bash as one quoted word.
SYNC_COMMAND = 'exec "$FRESHNESS_BIN" sync --shard "$FRESHNESS_SHARD"'
SHARD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def run_cli(*args: str, timeout_s: float = 1800) -> dict:
    """Run `freshness ARGS --json` as an argument list and return its JSON output."""
    result = subprocess.run([FRESHNESS_BIN, *args, "--json"], capture_output=True, text=True,
                            timeout=timeout_s, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"freshness {' '.join(args)} exited {result.returncode}: "
                           f"{result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout)


def pending_shards(detect_output: Mapping) -> list[str]:
    """Shards with pending changes, from `freshness detect --json` (unsafe names refused)."""
    shards = []
    for row in detect_output.get("shards", []):
        if not row.get("pending_docs"):
            continue
        name = str(row["shard"])
        if not SHARD_NAME.fullmatch(name) or ".." in name:
            raise ValueError(f"refusing shard name {name!r}: letters, digits, . _ - only")
        shards.append(name)
    return shards


def sync_envs(shards: list[str], freshness_bin: str = FRESHNESS_BIN) -> list[dict[str, str]]:
    """One environment per mapped sync task."""
    return [{"FRESHNESS_BIN": freshness_bin, "FRESHNESS_SHARD": s} for s in shards]


def stale_shards(status_output: Mapping, max_pending_age_s: float = MAX_PENDING_AGE_S,
                 now: datetime | None = None) -> dict[str, str]:
    """Shard -> why it is stale, from `freshness status --json`.

    Stale: a change has been pending longer than max_pending_age_s, or the shard has not been
    scanned for that long (then nobody knows what is pending).
    """
    now = now or datetime.now(timezone.utc)
    stale = {}
    for row in status_output.get("shards", []):
        age = float(row.get("pending_age_seconds") or 0)
        if age > max_pending_age_s:
            stale[row["shard"]] = (f"{row['pending_docs']} docs pending for {age:.0f}s "
                                   f"(oldest change {row['oldest_pending_change']})")
            continue
        scanned = row.get("scanned_at")
        if scanned:
            scanned_at = datetime.fromisoformat(str(scanned).replace(" ", "T"))
            if scanned_at.tzinfo is None:
                scanned_at = scanned_at.replace(tzinfo=timezone.utc)
            if (now - scanned_at).total_seconds() > max_pending_age_s:
                stale[row["shard"]] = f"not scanned since {scanned}"
    return stale


try:  # Airflow 3 (task SDK); Airflow 2.x fallback below
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG, task
except ImportError:  # pragma: no cover - depends on the Airflow version installed
    try:
        from airflow import DAG
        from airflow.decorators import task
        from airflow.operators.bash import BashOperator
    except ImportError:  # no Airflow: the helpers above stay importable (tests)
        DAG = None

if DAG is not None:
    with DAG(
        dag_id="retrieval_freshness",
        description="Re-embed changed shards into Qdrant and check per-shard freshness",
        schedule=timedelta(minutes=30),
        start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
        catchup=False,
        max_active_runs=1,
        default_args={"retries": 1, "retry_delay": timedelta(minutes=2)},
        tags=["rag", "freshness"],
    ) as dag:

        @task
        def list_pending_shards() -> list[dict[str, str]]:
            """Cheap change detection (hashes only, no embedding)."""
            return sync_envs(pending_shards(run_cli("detect")))

        sync_shard = BashOperator.partial(
            task_id="sync_shard",
            bash_command=SYNC_COMMAND,
            append_env=True,  # keep the worker's FRESHNESS_* settings
            pool=SYNC_POOL,
            execution_timeout=timedelta(hours=2),
        ).expand(env=list_pending_shards())

        @task(trigger_rule="all_done")
        def check_freshness() -> dict:
            """Fails the DAG run when a shard stays stale (after the syncs, even failed ones)."""
            status = run_cli("status")
            stale = stale_shards(status)
            if stale:
                raise RuntimeError("stale shards: " + "; ".join(
                    f"{shard}: {why}" for shard, why in sorted(stale.items())))
            return {row["shard"]: row["last_embedded_at"] for row in status["shards"]}

        sync_shard >> check_freshness()
