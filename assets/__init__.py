"""Dagster assets over the freshness core; the root `definitions.py` assembles the location."""
