"""When to re-embed: the staleness-debt planner, the cadence decision the sensor runs, learned run
costs, the simulator that replays change logs through the same decision.
"""
