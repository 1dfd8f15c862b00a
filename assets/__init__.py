"""Dagster assets over the freshness core; the code location is `assets.definitions`."""
