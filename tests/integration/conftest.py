"""Fixtures for the integration tests: a fresh PostgreSQL database per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

PG_URL_VAR = "FRESHNESS_TEST_PG_URL"


@pytest.fixture
def pg_env() -> Iterator[dict[str, str]]:
    """A fresh, empty database on the test PostgreSQL server, as DAGSTER_PG_* variables.

    Skips unless FRESHNESS_TEST_PG_URL names a role that may create databases
    (`eval "$(deploy/ci/start_postgres.sh)"` sets it; .ci/run does so).
    """
    url_text = os.environ.get(PG_URL_VAR)
    if not url_text:
        pytest.skip(f"{PG_URL_VAR} is not set: start a server with "
                    "`eval \"$(deploy/ci/start_postgres.sh)\"` to run Postgres tests")
    pytest.importorskip("dagster_postgres", reason="dagster-postgres is not installed "
                        "(pip install -e '.[postgres]')")
    import psycopg2
    from sqlalchemy.engine import make_url

    url = make_url(url_text)
    db_name = f"freshness_test_{uuid.uuid4().hex[:10]}"
    connect = dict(host=url.host, port=url.port or 5432, user=url.username,
                   password=url.password or "", dbname=url.database or "postgres",
                   connect_timeout=10)
    admin = psycopg2.connect(**connect)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{db_name}"')
        yield {"DAGSTER_PG_HOST": url.host, "DAGSTER_PG_PORT": str(url.port or 5432),
               "DAGSTER_PG_USER": url.username, "DAGSTER_PG_PASSWORD": url.password or "",
               "DAGSTER_PG_DB": db_name}
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        admin.close()
