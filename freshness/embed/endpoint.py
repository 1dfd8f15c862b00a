"""An OpenAI-compatible `/v1/embeddings` endpoint as the embedding backend.

What TEI, Infinity, vLLM, our own `freshness.embed.server` and hosted APIs serve. Texts go in
batches of `batch_size`, at most `concurrency` requests in flight; 408/429/5xx answers, timeouts
and dropped connections are retried with exponential backoff and jitter (a `Retry-After` header
is honoured); any other error stops the run with the server's message and the fix. The model id
the server answers with and the vector dimension are checked on every response.

The lineage records the endpoint's model name and a revision: `FRESHNESS_MODEL_REVISION` when
pinned, else what the server reports (`revision` in `/v1/models`, TEI's `model_sha` in `/info`),
else a fingerprint of the vector of a fixed probe text — so that new weights behind the same
name get a new collection instead of mixing two models in one.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace
from functools import cached_property

import numpy as np

from freshness.embed.base import EmbeddingBackend, ProgressFn
from freshness.embed.models import ModelSpec
from freshness.errors import ConfigError, FreshnessError
from freshness.util.faults import fault_point

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
PROBE_TEXT = "retrieval-freshness endpoint probe: the quick brown fox jumps over the lazy dog."
MAX_BACKOFF_S = 30.0


class EndpointError(FreshnessError):
    """The embedding endpoint refused or failed a request."""


def _short(name: str) -> str:
    return name.rsplit("/", 1)[-1].lower()


class EndpointEmbedder(EmbeddingBackend):
    """Embeds through `POST {url}/embeddings`; `tokenizer_spec` is the local tokenizer that
    chunking counts tokens with (the served model's, or one close to it)."""

    def __init__(self, url: str, model: str, tokenizer_spec: ModelSpec, *,
                 api_key: str | None = None, revision: str | None = None,
                 batch_size: int = 64, concurrency: int = 4, timeout_s: float = 60.0,
                 retries: int = 6, backoff_s: float = 0.5,
                 expected_dim: int | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"FRESHNESS_EMBEDDING_URL={url!r} is not an http(s) URL: use e.g. "
                              "http://127.0.0.1:8080/v1 (the base that /embeddings hangs off)")
        if concurrency < 1 or batch_size < 1:
            raise ConfigError("embedding concurrency and batch size must be >= 1")
        self.url = url.rstrip("/")
        self.model_name = model
        self.tokenizer_spec = tokenizer_spec
        self.pinned_revision = revision
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.expected_dim = expected_dim
        self._api_key = api_key
        self._dim: int | None = None
        self._lock = threading.Lock()
        self.retries_done = 0
        self.tokens_used = 0
        self.request_seconds = 0.0

    def __repr__(self) -> str:  # never show the API key
        return f"EndpointEmbedder(url={self.url!r}, model={self.model_name!r})"

    @cached_property
    def _client(self):
        import httpx

        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        return httpx.Client(headers=headers, timeout=httpx.Timeout(self.timeout_s),
                            limits=httpx.Limits(max_connections=self.concurrency))

    # -- identity ---------------------------------------------------------------------------

    @cached_property
    def _served(self) -> dict:
        """The server's entry for our model from GET /models ({} when it lists none)."""
        status, body = self._request("GET", "/models", None)
        if status == 404 or (status == 200 and not isinstance(body, dict)):
            return {}
        if status != 200:
            raise self._refusal(status, body)
        entries = [e for e in body.get("data", []) if isinstance(e, dict)]
        names = [str(e.get("id")) for e in entries]
        for entry in entries:
            if str(entry.get("id")) == self.model_name:
                return entry
        for entry in entries:
            if _short(str(entry.get("id"))) == _short(self.model_name):
                return entry
        if entries:
            raise ConfigError(f"the endpoint {self.url} does not serve model "
                              f"{self.model_name!r}; it serves {names}: set FRESHNESS_MODEL to "
                              "one of them")
        return {}

    def _server_revision(self) -> str | None:
        revision = self._served.get("revision") or self._served.get("model_sha")
        if revision:
            return str(revision)
        base = self.url[:-3] if self.url.endswith("/v1") else self.url
        try:  # TEI reports the weights' commit at /info
            status, body = self._request("GET", base + "/info", None, absolute=True)
        except EndpointError:
            return None
        if status == 200 and isinstance(body, dict) and body.get("model_sha"):
            return str(body["model_sha"])
        return None

    @cached_property
    def spec(self) -> ModelSpec:
        revision = self.pinned_revision or self._server_revision()
        if not revision:
            probe = self._embed_batch([PROBE_TEXT])[0]
            revision = "probe-" + hashlib.sha256(
                np.round(probe, 2).astype(np.float32).tobytes()).hexdigest()[:24]
        return replace(self.tokenizer_spec, name=self.model_name, revision=revision)

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._embed_batch([PROBE_TEXT])
        assert self._dim is not None
        return self._dim

    @property
    def device(self) -> str:
        return f"endpoint:{self.url}"

    def warm(self) -> None:
        """Check the model id, the dimension and the revision now."""
        _ = self.spec, self.dim

    # -- embedding --------------------------------------------------------------------------

    def encode(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        batches = [(s, texts[s:s + self.batch_size])
                   for s in range(0, len(texts), self.batch_size)]
        out: list[np.ndarray | None] = [None] * len(batches)
        started, done = time.perf_counter(), 0
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(batches))) as pool:
            futures = {pool.submit(self._embed_batch, b): i for i, (_, b) in enumerate(batches)}
            try:
                for future in as_completed(futures):
                    i = futures[future]
                    out[i] = future.result()
                    done += len(batches[i][1])
                    if progress:
                        progress(done, len(texts), time.perf_counter() - started)
                    fault_point("mid_embedding")
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        return np.vstack(out).astype(np.float32, copy=False)

    def _embed_batch(self, batch: list[str]) -> np.ndarray:
        payload = {"model": self.model_name, "input": batch, "encoding_format": "float"}
        started = time.perf_counter()
        status, body = self._request("POST", "/embeddings", payload)
        elapsed = time.perf_counter() - started
        if status != 200 or not isinstance(body, dict):
            raise self._refusal(status, body)
        data = body.get("data")
        if not isinstance(data, list) or len(data) != len(batch):
            raise EndpointError(f"the endpoint {self.url} answered {len(data or [])} embeddings "
                                f"for {len(batch)} inputs: it is not OpenAI-compatible")
        answered = body.get("model")
        if answered and str(answered) != self.model_name and \
                _short(str(answered)) != _short(self.model_name):
            raise ConfigError(f"the endpoint {self.url} embedded with model {answered!r}, not "
                              f"{self.model_name!r}: set FRESHNESS_MODEL={answered} or fix the "
                              "server's model")
        order = sorted(range(len(data)), key=lambda i: int(data[i].get("index", i)))
        vectors = np.asarray([data[i]["embedding"] for i in order], dtype=np.float32)
        self._check_dim(vectors.shape[1])
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        usage = body.get("usage") or {}
        with self._lock:
            self.tokens_used += int(usage.get("total_tokens") or usage.get("prompt_tokens") or 0)
            self.request_seconds += elapsed
        return vectors / np.where(norms > 0, norms, 1.0)

    def _check_dim(self, dim: int) -> None:
        with self._lock:
            expected = self._dim or self.expected_dim
            if expected is not None and dim != expected:
                raise ConfigError(
                    f"the endpoint {self.url} returned {dim}-d vectors for {self.model_name!r}, "
                    f"expected {expected}-d: set FRESHNESS_EMBEDDING_DIM={dim} if the model "
                    "really changed (it then gets a new collection), or fix the server")
            self._dim = dim

    def _refusal(self, status: int, body) -> FreshnessError:
        message = body.get("error", body) if isinstance(body, dict) else body
        if isinstance(message, dict):
            message = message.get("message", message)
        hint = {401: "set FRESHNESS_EMBEDDING_API_KEY", 403: "check the API key's permissions",
                404: "check FRESHNESS_EMBEDDING_URL (the base ending in /v1) and FRESHNESS_MODEL",
                413: "lower FRESHNESS_BATCH_SIZE or FRESHNESS_CHUNK_TOKENS"}.get(
                    status, "check the server's log")
        error = ConfigError if status in (400, 401, 403, 404, 422) else EndpointError
        return error(f"the embedding endpoint {self.url} answered HTTP {status}: {message}: "
                     f"{hint}")

    def _request(self, method: str, path: str, payload: dict | None,
                 absolute: bool = False) -> tuple[int, object]:
        """(status, parsed JSON body or text), retrying what is worth retrying."""
        import httpx

        url = path if absolute else self.url + path
        last = ""
        for attempt in range(self.retries + 1):
            try:
                response = self._client.request(method, url, json=payload)
            except httpx.TransportError as exc:  # connect error, timeout, dropped connection
                last = f"{type(exc).__name__}: {exc}"
                wait = None
            else:
                if response.status_code not in RETRY_STATUS:
                    try:
                        return response.status_code, response.json()
                    except ValueError:
                        return response.status_code, response.text[:500]
                last = f"HTTP {response.status_code}: {response.text[:200]}"
                wait = _retry_after(response.headers.get("retry-after"))
            if attempt == self.retries:
                break
            with self._lock:
                self.retries_done += 1
            if wait is None:
                wait = min(MAX_BACKOFF_S, self.backoff_s * 2 ** attempt) * (0.5 + random.random())
            time.sleep(min(wait, MAX_BACKOFF_S))
        raise EndpointError(f"the embedding endpoint {url} failed {self.retries + 1} times "
                            f"(last: {last}): check that it is up, or raise "
                            "FRESHNESS_EMBEDDING_RETRIES / FRESHNESS_EMBEDDING_TIMEOUT_S")


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
