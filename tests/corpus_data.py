"""The small two-shard corpus shared by the unit and the integration tests."""

from pathlib import Path

TINY_CORPUS = {
    "alpha/apples.md":
        "# Apples\n\nApples grow on trees in orchards.\n\nThey are red or green.",
    "alpha/pears.md": "# Pears\n\nPears are sweet and grainy.",
    "beta/boats.md": "# Boats\n\nBoats float on water and carry cargo.",
    "beta/bikes.txt": "Bicycles have two wheels and pedals.",
}


def write_tiny_corpus(root: Path) -> Path:
    """Two shards of two short documents each, under `root`."""
    for rel, text in TINY_CORPUS.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root
