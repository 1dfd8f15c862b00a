"""The `freshness` command: one module per command, shared options in `common`."""

from freshness.cli.main import main

__all__ = ["main"]
