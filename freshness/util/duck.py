"""One DuckDB connection per thread for the small per-shard queries.

Opening an in-memory DuckDB costs ~10 ms — more than the queries a sensor tick runs per shard —
so the diff and detection queries reuse a thread's connection and register their Arrow inputs
for the duration of one query.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
import pyarrow as pa

_local = threading.local()


def connection() -> duckdb.DuckDBPyConnection:
    """This thread's connection (UTC session time zone)."""
    con = getattr(_local, "con", None)
    if con is None:
        con = _local.con = duckdb.connect()
        con.sql("SET TimeZone = 'UTC'")
    return con


@contextmanager
def registered(**tables: pa.Table) -> Iterator[duckdb.DuckDBPyConnection]:
    """The thread's connection with `tables` registered under their names, then removed."""
    con = connection()
    for name, table in tables.items():
        con.register(name, table)
    try:
        yield con
    finally:
        for name in tables:
            con.unregister(name)
