"""Shard names: which are refused, and the one reversible mapping of a name to a path segment.

Names are kept verbatim everywhere users see them (payloads, status, alerts, partition keys),
and may nest (`reference/spl`, `tenants/acme/kb`). Only truly unsafe names are refused: empty,
control characters, `..`, empty or `.` levels, or a name whose path segment is over-long.
On disk a name is one path segment (`shard_segment`): percent-encoding of everything but
letters, digits and `._-~`, so `reference/spl` is the folder `reference%2Fspl` and plain names
(`alpha`) keep their folder. `shard_from_segment` is its inverse.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import quote, unquote

MAX_SEGMENT_BYTES = 255  # the usual file-name limit (ext4, APFS, NTFS), and S3 is far above it
SHARD_NAME_RULE = (
    "a shard name may nest with '/' (e.g. 'tenants/acme/kb') but must not be empty, contain "
    "control characters or '..', have empty or '.' levels, or exceed "
    f"{MAX_SEGMENT_BYTES} bytes once encoded as a folder name"
)


def shard_segment(name: str) -> str:
    """The single path segment (folder name) that stands for shard `name`."""
    return quote(name, safe="")


def shard_from_segment(segment: str) -> str:
    """The shard name a path segment stands for (inverse of `shard_segment`)."""
    return unquote(segment)


def shard_name_problem(name: object) -> str | None:
    """Why `name` is not a valid shard name, or None when it is."""
    why = _why(name)
    return f"shard name {name!r} is not allowed ({why}): {SHARD_NAME_RULE}; rename it at the " \
        "source" if why else None


def _why(name: object) -> str | None:
    if not isinstance(name, str) or not name:
        return "empty or not text"
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        return "control character"
    if ".." in name:
        return "contains '..'"
    if any(level in ("", ".") for level in name.split("/")):
        return "empty or '.' level"
    if len(shard_segment(name).encode()) > MAX_SEGMENT_BYTES:
        return "over-long"
    return None


def is_valid_shard_name(name: object) -> bool:
    """True when `name` can be used as a shard (its segment is then a safe folder name)."""
    return shard_name_problem(name) is None
