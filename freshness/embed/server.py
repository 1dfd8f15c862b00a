"""A small OpenAI-compatible embedding server for a sentence-transformers model.

    python -m freshness.embed.server [--host 127.0.0.1] [--port 8080] [--model NAME|FOLDER]
                                     [--device auto] [--batch-size 64]

Serves `POST /v1/embeddings` (`input`: a string or a list of strings), `GET /v1/models` (with
the model's revision and dimension, which the endpoint client records) and `GET /health`.
The model loads once and stays warm, so a sync that embeds through it pays no import or load.
Standard library HTTP (one thread per connection, one model call at a time): meant for one
machine's GPU behind the `freshness` runs and for tests, not as a hardened public service —
TEI, Infinity or vLLM serve the same API for that.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from freshness.embed.embedding import Embedder
from freshness.embed.models import resolve_model

MAX_BODY_BYTES = 32 * 2**20
MAX_INPUTS = 2048


class EmbeddingServer(ThreadingHTTPServer):
    """Holds the warm model; handlers share it under a lock."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], embedder: Embedder) -> None:
        super().__init__(address, EmbeddingHandler)
        self.embedder = embedder
        self.model_lock = threading.Lock()
        self.requests_served = 0

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"


class EmbeddingHandler(BaseHTTPRequestHandler):
    server: EmbeddingServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        """Quiet: one line per request would drown a test log."""

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, code: str) -> None:
        self._send(status, {"error": {"message": message, "type": "invalid_request_error",
                                      "code": code}})

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        spec = self.server.embedder.spec
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self._send(200, {"object": "list", "data": [{
                "id": spec.name, "object": "model", "owned_by": "freshness",
                "revision": spec.revision, "dim": self.server.embedder.dim,
                "max_seq_length": spec.max_seq_length}]})
        elif self.path == "/health":
            self._send(200, {"status": "ok"})
        else:
            self._error(404, f"no route {self.path}", "not_found")

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        if self.path.rstrip("/") not in ("/v1/embeddings", "/embeddings"):
            self._error(404, f"no route {self.path}", "not_found")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._error(413, f"body of {length} bytes is over {MAX_BODY_BYTES}", "too_large")
            return
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._error(400, "body is not JSON", "invalid_json")
            return
        spec = self.server.embedder.spec
        model = request.get("model")
        if model not in (None, spec.name, spec.name.rsplit("/", 1)[-1], spec.location):
            self._error(404, f"model {model!r} is not served; this server serves "
                        f"{spec.name!r}", "model_not_found")
            return
        texts = request.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            self._error(400, "input must be a string or a list of strings", "invalid_input")
            return
        if len(texts) > MAX_INPUTS:
            self._error(413, f"{len(texts)} inputs is over {MAX_INPUTS}", "too_many_inputs")
            return
        embedder = self.server.embedder
        with self.server.model_lock:
            vectors = embedder.encode(texts)
            tokens = sum(len(ids) for ids in embedder.model.tokenizer(texts)["input_ids"]) \
                if texts else 0
            self.server.requests_served += 1
        self._send(200, {"object": "list", "model": spec.name,
                         "data": [{"object": "embedding", "index": i, "embedding": v.tolist()}
                                  for i, v in enumerate(vectors)],
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def make_server(model: str | None = None, device: str = "auto", host: str = "127.0.0.1",
                port: int = 0, batch_size: int = 64) -> EmbeddingServer:
    """A bound server with the model loaded (call `serve_forever`, e.g. in a thread)."""
    spec = resolve_model(model) if model else resolve_model()
    embedder = Embedder(spec, device=device, batch_size=batch_size)
    embedder.warm()
    return EmbeddingServer((host, port), embedder)


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # leaves serve_forever in the main thread; the socket is closed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m freshness.embed.server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 = any free port")
    parser.add_argument("--model", default=None, help="name or folder (default: packaged MiniLM)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    server = make_server(args.model, args.device, args.host, args.port, args.batch_size)
    # stop on SIGTERM (docker stop, Kubernetes, a supervisor) even when the parent process
    # ignored it: an ignored signal is inherited across exec
    signal.signal(signal.SIGTERM, _stop)
    try:  # from the "serving" line on (a supervisor may stop us as soon as it reads it)
        print(f"serving {server.embedder.spec.name} on {server.url}", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
