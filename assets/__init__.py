"""Dagster assets over the freshness core (the code location entry point is `assets.definitions`)."""
