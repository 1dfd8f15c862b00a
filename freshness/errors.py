"""Error types that name the bad input and the fix."""


class FreshnessError(Exception):
    """Base class for errors a user can act on."""


class ConfigError(FreshnessError):
    """A setting is missing or invalid."""


class SourceError(FreshnessError):
    """A source cannot be read as configured."""


class IndexBusyError(FreshnessError):
    """An embedded index folder is held by another process."""


class StateError(FreshnessError):
    """Per-shard state is unreadable or inconsistent."""


class IndexDamagedError(StateError):
    """An index shard exists but cannot be opened or read (damaged files)."""
