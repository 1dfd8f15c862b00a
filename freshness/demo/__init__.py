"""The synthetic demo corpus and request logs (make demo); never used on real data."""
