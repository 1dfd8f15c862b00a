"""Shard names: what is allowed, so a shard can never name a path outside the state root."""

from __future__ import annotations

import re

SHARD_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
SHARD_NAME_RULE = (
    "a shard name is 1-100 characters of letters, digits, '.', '_' or '-', starting with a "
    "letter or digit and without '..'"
)


def shard_name_problem(name: object) -> str | None:
    """Why `name` is not a valid shard name, or None when it is."""
    if not isinstance(name, str) or not SHARD_NAME_PATTERN.match(name) or ".." in name:
        return f"shard name {name!r} is not allowed: {SHARD_NAME_RULE}; rename it at the source"
    return None


def is_valid_shard_name(name: object) -> bool:
    """True when `name` can be used as a shard (and as a path segment)."""
    return shard_name_problem(name) is None
