"""Small utilities every layer may use: UTC time, DuckDB helpers, hashes and point ids, shard-name
rules, change-rate estimators, fault points for crash tests.
"""
