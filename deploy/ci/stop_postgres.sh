#!/usr/bin/env bash
# Stop the throwaway cluster started by start_postgres.sh and delete its folder.
#   deploy/ci/stop_postgres.sh [PGDIR]     (default: $FRESHNESS_TEST_PG_DIR)
set -euo pipefail
PGDIR="${1:-${FRESHNESS_TEST_PG_DIR:-}}"
if [ -z "$PGDIR" ] || [ ! -d "$PGDIR/data" ]; then
  echo "stop_postgres: no cluster folder given (PGDIR or FRESHNESS_TEST_PG_DIR)" >&2
  exit 0
fi
case "$PGDIR" in
  */freshness-pg.*) ;;
  *) echo "stop_postgres: refusing to delete $PGDIR (not made by start_postgres.sh)" >&2; exit 1 ;;
esac
BINDIR="${FRESHNESS_TEST_PG_BINDIR:-}"
if [ -z "$BINDIR" ]; then
  BINDIR="$(dirname "$(command -v pg_ctl 2>/dev/null || ls -d /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -n 1)")"
fi
OWNER="$(stat -c %U "$PGDIR/data")"
if [ "$(id -u)" -eq 0 ] && [ "$OWNER" != root ]; then
  runuser -u "$OWNER" -- "$BINDIR/pg_ctl" -D "$PGDIR/data" -m fast -w stop >/dev/null || true
else
  "$BINDIR/pg_ctl" -D "$PGDIR/data" -m fast -w stop >/dev/null || true
fi
rm -rf "$PGDIR"
echo "stop_postgres: stopped and removed $PGDIR" >&2
