"""Checks and fixes: verify (index == manifests == source), reconcile, repair, step-by-step replay
check.
"""
