"""Arrow helpers: columns are addressed by name, never by position."""

from __future__ import annotations

import pyarrow as pa


def replace_column(table: pa.Table, name: str, values: pa.Array | pa.ChunkedArray) -> pa.Table:
    """`table` with its column `name` replaced by `values` (same position and name)."""
    return table.set_column(table.schema.get_field_index(name), name, values)
