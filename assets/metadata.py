"""Turning core results into Dagster metadata a user reads at a glance."""


from datetime import datetime

import dagster as dg
import pyarrow as pa

_TYPES = {"int64": "int", "int32": "int", "double": "float", "bool": "bool"}


def timestamp(value: datetime | str | None) -> dg.MetadataValue | None:
    from freshness.util.timeutil import as_utc

    value = as_utc(value)
    return dg.MetadataValue.timestamp(value.timestamp()) if value else None


def table(data: pa.Table) -> dg.TableMetadataValue:
    """An Arrow table as a UI table (timestamps as ISO text, missing values as "")."""
    columns = [dg.TableColumn(f.name, _TYPES.get(str(f.type), "string")) for f in data.schema]
    records = []
    for row in data.to_pylist():
        records.append(dg.TableRecord({
            k: (v.isoformat(timespec="seconds") if isinstance(v, datetime)
                else "" if v is None else v)
            for k, v in row.items()
        }))
    return dg.MetadataValue.table(records, dg.TableSchema(columns))


def clean(metadata: dict) -> dict:
    """Drop None values (Dagster rejects them)."""
    return {k: v for k, v in metadata.items() if v is not None}
