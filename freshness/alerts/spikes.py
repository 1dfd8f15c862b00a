"""Change-rate spike alerts: one notification per spike a shard's rate history flagged."""

from __future__ import annotations

from collections.abc import Mapping

from freshness.alerts.incidents import Notification
from freshness.util.timeutil import iso


def spike_notifications(latest: Mapping[str, dict], seen: Mapping[str, str]
                        ) -> tuple[list[Notification], dict[str, str]]:
    """A notification for each shard whose latest poll (`RateHistory.latest`) flagged a spike
    not notified yet; `seen` maps shard -> poll time already notified (returned updated)."""
    out, seen = [], dict(seen)
    for shard, row in sorted(latest.items()):
        if not row or not row["spike"]:
            continue
        polled = iso(row["polled_at"])
        if seen.get(shard) == polled:
            continue
        seen[shard] = polled
        rate = row["rate_per_doc_day"]
        out.append(Notification(
            "spike", shard, "WARN",
            f"[retrieval-freshness] change-rate spike in shard {shard}: {row['changed']} docs "
            f"changed in the last poll, rate now {rate:.4f} changes/doc/day",
            {"shard": shard, "polled_at": polled, "rate_per_doc_day": rate},
            f"{shard}:{polled}:spike"))
    return out, seen
