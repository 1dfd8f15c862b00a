"""What every embedding backend offers: an identity (ModelSpec), a dimension, and encode()."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import numpy as np

from freshness.embed.models import ModelSpec

ProgressFn = Callable[[int, int, float], None]


class EmbeddingBackend(ABC):
    """Turns chunk texts into normalized float32 vectors; `spec` is what the lineage records."""

    #: accumulated usage of this backend object (the run log turns it into a cost)
    tokens_used: int = 0
    request_seconds: float = 0.0

    @property
    @abstractmethod
    def spec(self) -> ModelSpec:
        """Model name, revision, tokenizer location and input limit (recorded on every point)."""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Vector dimension."""

    @property
    @abstractmethod
    def device(self) -> str:
        """Where vectors are computed (`cpu`, `cuda:0`, `endpoint:<url>`)."""

    @abstractmethod
    def warm(self) -> None:
        """Load weights or check the endpoint now (so that load time is not embedding time)."""

    def prefetch(self) -> None:
        """Start `warm()` in the background (a sync calls it once it knows it will embed, so
        the load overlaps the rest of planning); a later `warm()` waits for it. Default: a
        no-op, for backends whose warm-up is cheap."""
        return None

    @abstractmethod
    def encode(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray:
        """Normalized float32 vectors, one row per text, in input order."""
