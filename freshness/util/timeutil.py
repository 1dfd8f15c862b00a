"""UTC time helpers: every timestamp in the package is timezone-aware UTC."""

from __future__ import annotations

from datetime import datetime, timezone

DAY_S = 86400.0  # seconds in a day: rates are per doc per day


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def as_utc(value: datetime | str | None) -> datetime | None:
    """Parse or normalise a timestamp to aware UTC; naive values are taken as UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def iso(value: datetime | None) -> str | None:
    """ISO-8601 text for a timestamp, or None."""
    return None if value is None else as_utc(value).isoformat()


def file_stamp(value: datetime | None = None) -> str:
    """A UTC time as one path-safe token, e.g. `20261201T130842564656Z`."""
    return (value or utc_now()).astimezone(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
