"""Shared fixtures: the real model (loaded once), temporary corpora, runtimes on embedded Qdrant."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from freshness.config import Settings  # noqa: E402
from freshness.embed.embedding import Embedder  # noqa: E402
from freshness.embed.models import resolve_model  # noqa: E402
from freshness.runtime import Runtime  # noqa: E402
from tests.corpus_data import write_tiny_corpus  # noqa: E402
from tests.services import pg_dsn, pg_server, s3, s3_endpoint  # noqa: F401 (fixtures)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tldr-replay"


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The real all-MiniLM-L6-v2 on CPU, loaded once for the whole run."""
    return Embedder(resolve_model(), device="cpu", batch_size=32)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A small two-shard folder corpus."""
    return write_tiny_corpus(tmp_path / "corpus")


@pytest.fixture
def make_runtime(tmp_path: Path, embedder: Embedder):
    """Build a Runtime over a folder (or any source) with state and index in tmp_path."""

    def build(source_path: Path | None = None, source=None, index=None, **settings) -> Runtime:
        values = dict(source_path=str(source_path) if source_path else None,
                      state_root=str(tmp_path / "state"), index_path=str(tmp_path / "qdrant"),
                      device="cpu", lock_timeout_s=5.0)
        values.update(settings)
        return Runtime(Settings(**values), source=source, index=index, embedder=embedder)

    return build
