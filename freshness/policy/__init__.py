"""When to re-embed: the staleness-debt planner, the cadence decision the sensor runs, learned run
costs, the simulator that replays change logs through the same decision (with the retrieval
shares known, or learned from a sampled query stream as a deployment learns them).
"""
