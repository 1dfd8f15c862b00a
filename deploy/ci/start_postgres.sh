#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster for CI and integration tests.
#
#   eval "$(deploy/ci/start_postgres.sh)"     # exports FRESHNESS_TEST_PG_URL, DAGSTER_PG_*, ...
#   ...run tests...
#   deploy/ci/stop_postgres.sh                 # stops it and deletes its folder
#
# Installs Debian's `postgresql` package when no server binaries are found (needs root and
# apt-get). The cluster lives in a new temp folder, listens on 127.0.0.1 on a free port, and
# runs as a non-root user (PostgreSQL refuses root): `postgres` when it exists, else the
# caller. stdout carries only `export` lines; progress goes to stderr. fsync is off: the data
# is disposable.
set -euo pipefail

PG_USER_NAME="${FRESHNESS_PG_ROLE:-freshness}"
PG_DB_NAME="${FRESHNESS_PG_DB:-dagster}"

log() { echo "start_postgres: $*" >&2; }

find_bindir() {
  # Debian keeps the server binaries in /usr/lib/postgresql/<major>/bin, off PATH.
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [ -n "$dir" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/initdb" ]; then
    echo "$dir"
    return 0
  fi
  if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v pg_ctl)")"
    return 0
  fi
  return 1
}

if ! BINDIR="$(find_bindir)"; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing PostgreSQL from Debian packages (apt-get install -y postgresql)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    BINDIR="$(find_bindir)" || { log "postgresql installed but pg_ctl not found"; exit 1; }
  else
    log "no PostgreSQL server binaries and cannot apt-get install (need root + apt-get)"
    exit 1
  fi
fi

# PostgreSQL refuses to run as root: use the `postgres` system user (created by the Debian
# package) or create a dedicated one.
RUN_AS=""
if [ "$(id -u)" -eq 0 ]; then
  if id postgres >/dev/null 2>&1; then
    RUN_AS=postgres
  else
    RUN_AS=freshness-pg
    id "$RUN_AS" >/dev/null 2>&1 || useradd --system --no-create-home "$RUN_AS"
  fi
fi

as_pg() {
  if [ -n "$RUN_AS" ]; then
    if command -v runuser >/dev/null 2>&1; then
      runuser -u "$RUN_AS" -- "$@"
    else
      su "$RUN_AS" -s /bin/sh -c "$(printf '%q ' "$@")"
    fi
  else
    "$@"
  fi
}

PY="$(command -v python3 || command -v python)"
PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
PGDIR="$(mktemp -d "${TMPDIR:-/tmp}/freshness-pg.XXXXXX")"
PASSWORD="$("$PY" -c 'import secrets; print(secrets.token_hex(12))')"
STARTED=""
cleanup_on_error() {
  if [ -n "$STARTED" ]; then
    as_pg "$BINDIR/pg_ctl" -D "$PGDIR/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$PGDIR"
}
trap 'log "failed; cleaning up $PGDIR"; cleanup_on_error' ERR

printf '%s\n' "$PASSWORD" > "$PGDIR/pwfile"
chmod 600 "$PGDIR/pwfile"
if [ -n "$RUN_AS" ]; then
  chown -R "$RUN_AS" "$PGDIR"
fi
chmod 700 "$PGDIR"

log "initdb in $PGDIR/data (binaries: $BINDIR${RUN_AS:+, user $RUN_AS})"
as_pg "$BINDIR/initdb" -D "$PGDIR/data" -U "$PG_USER_NAME" --pwfile="$PGDIR/pwfile" \
  --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
rm -f "$PGDIR/pwfile"

as_pg "$BINDIR/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w -t 60 start -o \
  "-p $PORT -k $PGDIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
-c full_page_writes=off -c max_connections=200" >/dev/null \
  || { log "pg_ctl start failed; server log:"; cat "$PGDIR/server.log" >&2 || true; exit 1; }
STARTED=1

PSQL="$BINDIR/psql"
[ -x "$PSQL" ] || PSQL="$(command -v psql)"
PGPASSWORD="$PASSWORD" "$PSQL" -q -h 127.0.0.1 -p "$PORT" -U "$PG_USER_NAME" \
  -d postgres -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$PG_DB_NAME\"" >/dev/null

ENV_FILE="$PGDIR/env.sh"
{
  echo "export FRESHNESS_TEST_PG_DIR='$PGDIR'"
  echo "export FRESHNESS_TEST_PG_BINDIR='$BINDIR'"
  echo "export FRESHNESS_TEST_PG_RUN_AS='$RUN_AS'"
  echo "export FRESHNESS_TEST_PG_URL='postgresql+psycopg2://$PG_USER_NAME:$PASSWORD@127.0.0.1:$PORT/postgres'"
  echo "export DAGSTER_PG_HOST=127.0.0.1"
  echo "export DAGSTER_PG_PORT=$PORT"
  echo "export DAGSTER_PG_USER='$PG_USER_NAME'"
  echo "export DAGSTER_PG_PASSWORD='$PASSWORD'"
  echo "export DAGSTER_PG_DB='$PG_DB_NAME'"
} > "$ENV_FILE"
chmod 600 "$ENV_FILE"
log "PostgreSQL ready on 127.0.0.1:$PORT (db $PG_DB_NAME, role $PG_USER_NAME); env in $ENV_FILE"
trap - ERR
cat "$ENV_FILE"
