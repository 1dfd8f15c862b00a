"""Runtime: the source, index, state and model that Settings describe, built lazily."""

from __future__ import annotations

from functools import cached_property

from freshness.config import Settings
from freshness.embed.base import EmbeddingBackend
from freshness.embed.chunking import Chunker
from freshness.embed.models import ModelSpec, resolve_model
from freshness.errors import ConfigError
from freshness.index.base import VectorIndex
from freshness.sources import Source, registry
from freshness.state.listing_cache import StateListingCache
from freshness.state.manifest import ShardStateStore
from freshness.state.store import StateStore


def build_source(settings: Settings) -> Source:
    """The source Settings name (kinds are registered in `sources.registry.SOURCE_KINDS`)."""
    return registry.build_source(settings)


def build_index(settings: Settings) -> VectorIndex:
    """A Qdrant server by URL when FRESHNESS_QDRANT_URL is set, else embedded Qdrant on disk."""
    if settings.qdrant_url:
        from freshness.index.client import ClientIndex

        return ClientIndex(url=settings.qdrant_url, api_key=settings.qdrant_api_key,
                           prefer_grpc=settings.qdrant_prefer_grpc,
                           timeout_s=settings.qdrant_timeout_s,
                           grpc_port=settings.qdrant_grpc_port, retries=settings.qdrant_retries,
                           backoff_s=settings.qdrant_backoff_s,
                           replication_factor=settings.qdrant_replication_factor,
                           shard_number=settings.qdrant_shard_number,
                           upsert_batch=settings.upsert_batch)
    from freshness.index.edge import EdgeIndex

    return EdgeIndex(settings.index_path, lock_timeout_s=settings.lock_timeout_s,
                     upsert_batch=settings.upsert_batch, folders=settings.edge_folders)


def build_embedder(settings: Settings) -> EmbeddingBackend:
    """In-process sentence-transformers (default) or an OpenAI-compatible endpoint."""
    backend = settings.embedding_backend
    if backend == "local":
        from freshness.embed.embedding import Embedder

        return Embedder(resolve_model(settings.model, settings.model_revision), settings.device,
                        settings.batch_size, settings.embed_block_size)
    if backend == "endpoint":
        if not settings.embedding_url:
            raise ConfigError("embedding_backend=endpoint needs FRESHNESS_EMBEDDING_URL, e.g. "
                              "http://127.0.0.1:8080/v1")
        from freshness.embed.endpoint import EndpointEmbedder

        tokenizer = resolve_model(settings.embedding_tokenizer or settings.model)
        return EndpointEmbedder(
            settings.embedding_url, settings.model, tokenizer,
            api_key=settings.embedding_api_key, revision=settings.model_revision,
            batch_size=settings.batch_size, concurrency=settings.embedding_concurrency,
            timeout_s=settings.embedding_timeout_s, retries=settings.embedding_retries,
            expected_dim=settings.embedding_dim)
    raise ConfigError(f"unknown embedding_backend {backend!r}: use local or endpoint")


class Runtime:
    """Everything one sync needs; pass `source`/`index`/`embedder` to override (tests, CLI)."""

    def __init__(self, settings: Settings, source: Source | None = None, index=None,
                 embedder: EmbeddingBackend | None = None) -> None:
        self.settings = settings
        if source is not None:
            source.use_listing_cache(StateListingCache(self.store))
            self.source = source
        if index is not None:
            self.index = index
        if embedder is not None:
            self.embedder = embedder

    @cached_property
    def source(self) -> Source:
        source = build_source(self.settings)
        source.use_listing_cache(StateListingCache(self.store))
        return source

    @cached_property
    def index(self) -> VectorIndex:
        return build_index(self.settings)

    @cached_property
    def store(self) -> StateStore:
        return StateStore(self.settings.state_root)

    @cached_property
    def model_spec(self) -> ModelSpec:
        if self.settings.embedding_backend == "endpoint":
            return self.embedder.spec  # the served model's name and revision
        return resolve_model(self.settings.model, self.settings.model_revision)

    @cached_property
    def chunker(self) -> Chunker:
        spec = self.model_spec
        return Chunker.for_model(spec.location, spec.max_seq_length, self.settings.chunk_tokens,
                                 self.settings.overlap_tokens)

    @cached_property
    def embedder(self) -> EmbeddingBackend:
        return build_embedder(self.settings)

    @property
    def collection(self) -> str:
        """The collection the configured model writes to: `<alias>-<model>-<revision>`."""
        return f"{self.settings.alias}-{self.model_spec.slug}"

    def shard_state(self, collection: str | None = None) -> ShardStateStore:
        return ShardStateStore(self.store, collection or self.collection)

    def serving_collection(self) -> str | None:
        """The collection queries see now (behind the alias)."""
        return self.index.resolve_alias(self.settings.alias)
