"""A small synthetic corpus for the demo and tests, written by this project (no third-party text).

Four shards of markdown docs about a fictional company, "Northwind Robotics", of 8, 6, 4 and 3
docs (sizes differ, as real shards do). `mutate` edits docs so a demo can show changes flowing
through.
"""

from __future__ import annotations

import random
from pathlib import Path

SHARDS: dict[str, list[str]] = {
    "handbook": ["vacation policy", "expense reports", "remote work", "onboarding checklist",
                 "security training", "parental leave", "equipment budget", "travel booking"],
    "api": ["authentication tokens", "rate limits", "pagination", "webhooks", "error codes",
            "robot telemetry endpoint"],
    "runbooks": ["database failover", "disk full alert", "certificate renewal", "queue backlog"],
    "faq": ["battery life", "charging dock", "warranty claims"],
}
_OPENERS = [
    "This page explains {topic} at Northwind Robotics.",
    "Everything you need to know about {topic}, kept current by the owning team.",
    "{Topic} is one of the questions we hear most often.",
]
_FACTS = [
    "The current limit for {topic} is {n} per {unit}.",
    "Ask the {team} team in #{team}-help when {topic} behaves unexpectedly.",
    "Since version {major}.{minor}, {topic} is handled automatically for most accounts.",
    "For {topic}, check the dashboard first; it refreshes every {n} minutes.",
    "The owner of {topic} reviews this page every {n} weeks.",
    "A common mistake with {topic} is skipping the confirmation step.",
]
_TEAMS = ["platform", "people", "fleet", "support", "security", "firmware"]
_UNITS = ["day", "hour", "robot", "account", "month"]


def _paragraph(rng: random.Random, topic: str, sentences: int) -> str:
    parts = []
    for _ in range(sentences):
        parts.append(rng.choice(_FACTS).format(
            topic=topic, n=rng.randint(2, 90), unit=rng.choice(_UNITS),
            team=rng.choice(_TEAMS), major=rng.randint(1, 4), minor=rng.randint(0, 9)))
    return " ".join(parts)


def render_doc(rng: random.Random, topic: str) -> str:
    """A markdown doc on `topic`: a title and 2-4 paragraphs."""
    opener = rng.choice(_OPENERS).format(topic=topic, Topic=topic.capitalize())
    body = [_paragraph(rng, topic, rng.randint(2, 4)) for _ in range(rng.randint(2, 4))]
    return f"# {topic.title()}\n\n{opener}\n\n" + "\n\n".join(body) + "\n"


def write_corpus(root: str | Path, seed: int = 7, docs_per_shard: int | None = None) -> int:
    """Write the demo corpus under `root` (one folder per shard); returns the doc count."""
    rng, root, count = random.Random(seed), Path(root), 0
    for shard, topics in SHARDS.items():
        (root / shard).mkdir(parents=True, exist_ok=True)
        for topic in topics[:docs_per_shard]:
            (root / shard / f"{topic.replace(' ', '-')}.md").write_text(render_doc(rng, topic))
            count += 1
    return count


def mutate(root: str | Path, edits: int = 1, seed: int | None = None,
           shards: list[str] | None = None) -> list[str]:
    """Edit `edits` random docs (append a dated note); returns the doc paths touched."""
    rng, root, touched = random.Random(seed), Path(root), []
    candidates = sorted(p for s in (shards or list(SHARDS)) for p in (root / s).glob("*.md"))
    for path in rng.sample(candidates, min(edits, len(candidates))):
        topic = path.stem.replace("-", " ")
        with path.open("a") as handle:
            handle.write("\n" + _paragraph(rng, topic, 2) + "\n")
        touched.append(path.relative_to(root).as_posix())
    return touched
