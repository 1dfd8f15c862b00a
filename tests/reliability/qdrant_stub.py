"""A local HTTP stand-in for a failing Qdrant server (REST), recording every request."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Reply = tuple[int, dict]  # status, JSON body
ERROR_500: Reply = (500, {"status": {"error": "internal error"}, "time": 0.0})


class QdrantStub:
    """`with QdrantStub(reply) as stub:` serves `reply(method, path, n)` on 127.0.0.1.

    `n` counts earlier requests to the same method and path; `stub.requests` lists
    (method, path, headers) in arrival order.
    """

    def __init__(self, reply: Callable[[str, str, int], Reply] = lambda m, p, n: ERROR_500):
        self.reply = reply
        self.requests: list[tuple[str, str, dict]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                seen = sum(1 for m, p, _ in stub.requests if (m, p) == (self.command, self.path))
                stub.requests.append((self.command, self.path, dict(self.headers)))
                status, body = stub.reply(self.command, self.path, seen)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, *args) -> None:  # keep test output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> QdrantStub:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def snapshot(root) -> dict[str, bytes]:
    """Every file under a folder: relative path -> bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}
