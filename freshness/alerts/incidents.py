"""Incidents: one per stale shard — notify once, re-notify on escalation or after a cooldown,
resolve when fresh. Pure state transitions; the state is a JSON-ready dict (a sensor cursor)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import quote

from freshness.alerts.staleness import Level, ShardStaleness
from freshness.util.timeutil import as_utc, iso


@dataclass
class Notification:
    """One message to send: what happened to which shard, as text and as a JSON payload."""

    kind: str  # open | escalate | renotify | resolve | spike
    shard: str
    level: str
    text: str
    payload: dict = field(default_factory=dict)
    key: str = ""  # identifies the event, so a retried delivery is not sent twice


def asset_url(ui_url: str, shard: str) -> str:
    """Link to the shard's partition of `shard_embeddings` in the Dagster UI."""
    return f"{ui_url.rstrip('/')}/assets/shard_embeddings?view=partitions&partition=" \
        f"{quote(shard, safe='')}"


def describe(s: ShardStaleness, ui_url: str) -> tuple[str, dict]:
    """Human text and a JSON payload naming the shard, age, pending changes, SLA, traffic."""
    share = "query traffic share unknown (no request logs analysed yet)" \
        if s.traffic_share is None else f"{s.traffic_share:.1%} of query traffic"
    text = (f"[retrieval-freshness] {s.level.name}: shard {s.shard} — {s.reason}; "
            f"{s.pending_docs} changed docs pending; last embedded {iso(s.last_embedded_at)}; "
            f"{share}. {asset_url(ui_url, s.shard)}")
    payload = {**s.as_dict(), "pending_age_hours": round(s.pending_age_seconds / 3600, 3),
               "sla_hours": round(s.sla_seconds / 3600, 3), "url": asset_url(ui_url, s.shard)}
    return text, payload


def step(incidents: dict, evaluations: list[ShardStaleness], now: datetime,
         cooldown_seconds: float, ui_url: str) -> tuple[dict, list[Notification]]:
    """Advance the incident state by one evaluation; return the new state and what to send."""
    state, out = {k: dict(v) for k, v in incidents.items()}, []
    for s in evaluations:
        open_incident = state.get(s.shard)
        text, payload = describe(s, ui_url)
        if s.level == Level.OK:
            if open_incident:
                out.append(Notification("resolve", s.shard, "OK",
                                        f"[retrieval-freshness] RESOLVED: shard {s.shard} is "
                                        f"fresh again. {asset_url(ui_url, s.shard)}",
                                        payload, f"{s.shard}:{open_incident['opened_at']}:resolve"))
                del state[s.shard]
            continue
        if not open_incident:
            state[s.shard] = {"opened_at": iso(now), "level": int(s.level),
                              "notified_at": iso(now)}
            out.append(Notification("open", s.shard, s.level.name, text, payload,
                                    f"{s.shard}:{iso(now)}:open"))
            continue
        since = (now - as_utc(open_incident["notified_at"])).total_seconds()
        if s.level > open_incident["level"]:
            kind = "escalate"
        elif since >= cooldown_seconds:
            kind = "renotify"
        else:
            continue
        open_incident.update(level=max(int(s.level), open_incident["level"]),
                             notified_at=iso(now))
        out.append(Notification(kind, s.shard, s.level.name, text, payload,
                                f"{s.shard}:{open_incident['opened_at']}:{kind}:{iso(now)}"))
    return state, out
