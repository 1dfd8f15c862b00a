"""Run retention for open-source Dagster: delete finished runs older than N days.

Dagster's `retention:` setting purges sensor/schedule ticks only; runs and their event logs stay
forever. Run this daily (cron, a Kubernetes CronJob, or a Dagster schedule) against the
instance in $DAGSTER_HOME:

    python deploy/prune_runs.py --older-than-days 90 [--dry-run]

Deleting a run removes its event log, so asset materializations recorded by that run leave the
asset's history too (the latest materialization of an asset is kept by re-running it, not by
this script): keep the window longer than the sweep interval of every partition.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta, timezone

import dagster as dg

FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE,
            dg.DagsterRunStatus.CANCELED]


def prune_runs(instance: dg.DagsterInstance, older_than_days: float, dry_run: bool = False,
               batch_size: int = 200) -> int:
    """Delete (or, with dry_run, count) finished runs created before now - older_than_days."""
    cutoff = datetime.now(timezone.utc) - timedelta(days=older_than_days)
    filters = dg.RunsFilter(statuses=FINISHED, created_before=cutoff)
    if dry_run:
        return instance.get_runs_count(filters=filters)
    deleted = 0
    while True:
        records = instance.get_run_records(filters=filters, limit=batch_size, ascending=True)
        if not records:
            return deleted
        for record in records:
            instance.delete_run(record.dagster_run.run_id)
            deleted += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--older-than-days", type=float, required=True)
    parser.add_argument("--dry-run", action="store_true", help="count, do not delete")
    args = parser.parse_args(argv)
    if args.older_than_days < 0:
        parser.error("--older-than-days must be >= 0")
    with dg.DagsterInstance.get() as instance:
        count = prune_runs(instance, args.older_than_days, args.dry_run)
    print(f"{'would delete' if args.dry_run else 'deleted'} {count} runs older than "
          f"{args.older_than_days:g} days")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
