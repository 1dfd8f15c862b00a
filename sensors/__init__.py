"""Dagster sensors over the freshness core."""
