"""Embedding with sentence-transformers: device auto-detected, fp16 on CUDA, batched.

sentence-transformers (and torch) are imported on first use only: importing them costs
8-19 s on small machines, which sensors and status commands must never pay.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence

import numpy as np

from freshness.embed.base import EmbeddingBackend, ProgressFn
from freshness.embed.models import ModelSpec
from freshness.util.faults import fault_point

_MODELS: dict[tuple, object] = {}
_LOCK = threading.Lock()
BLOCK_SIZE = 2048  # chunks per encode call (Settings.embed_block_size)


def resolve_device(requested: str = "auto") -> str:
    """`cuda` when a GPU is visible, else `mps`, else `cpu`; an explicit choice is kept."""
    if requested != "auto":
        return requested
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def load_model(spec: ModelSpec, device: str = "auto"):
    """A loaded SentenceTransformer, cached per process (fp16 on CUDA)."""
    device = resolve_device(device)
    key = (spec.location, spec.revision, device)
    with _LOCK:
        if key not in _MODELS:
            if spec.is_local:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            from sentence_transformers import SentenceTransformer

            kwargs = {} if spec.is_local else {"revision": spec.revision}
            model = SentenceTransformer(spec.location, device=device, **kwargs)
            if device == "cuda":
                model.half()
            _MODELS[key] = model
        return _MODELS[key]


class Embedder(EmbeddingBackend):
    """In-process sentence-transformers: normalized vectors, progress reported per block."""

    def __init__(self, spec: ModelSpec, device: str = "auto", batch_size: int = 64,
                 block_size: int = BLOCK_SIZE) -> None:
        self._spec = spec
        self.requested_device = device
        self.batch_size = batch_size
        self.block_size = max(block_size, batch_size)
        self._prefetching: threading.Thread | None = None

    @property
    def spec(self) -> ModelSpec:
        return self._spec

    @property
    def model(self):
        return load_model(self.spec, self.requested_device)

    def warm(self) -> None:
        _ = self.model

    def prefetch(self) -> None:
        """Import sentence-transformers and load the weights on a daemon thread (load_model's
        lock makes a later `warm()` wait for it; a failure there is raised again by `warm()`)."""
        key = (self.spec.location, self.spec.revision, self.requested_device)
        if key in _MODELS or self._prefetching is not None:
            return

        def load() -> None:
            try:
                self.warm()
            except Exception:  # noqa: BLE001 - warm() in the caller's thread raises it
                pass

        self._prefetching = threading.Thread(target=load, name="model-prefetch", daemon=True)
        self._prefetching.start()

    @property
    def device(self) -> str:
        return str(self.model.device)

    @property
    def dim(self) -> int:
        get_dim = getattr(self.model, "get_embedding_dimension", None) or \
            self.model.get_sentence_embedding_dimension
        return int(get_dim())

    def encode(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray:
        """Normalized float32 vectors, one row per text, in input order."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model, started, parts = self.model, time.perf_counter(), []
        for start in range(0, len(texts), self.block_size):
            block = list(texts[start:start + self.block_size])
            parts.append(model.encode(block, batch_size=self.batch_size,
                                      normalize_embeddings=True, convert_to_numpy=True,
                                      show_progress_bar=False))
            if progress:
                progress(start + len(block), len(texts), time.perf_counter() - started)
            fault_point("mid_embedding")
        return np.vstack(parts).astype(np.float32, copy=False)
