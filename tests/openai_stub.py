"""A small OpenAI-compatible HTTP server on 127.0.0.1 for tests of the client's logic: how many requests
it keeps in flight, where they go, and how it lives with an endpoint that fails.

It answers /v1/chat/completions with a scripted reply after a delay, records the peak number of
requests it was serving at once, and injects faults at set rates (seeded, so a test is repeatable):

- "500": an internal server error;
- "429": rate limited, with a Retry-After header;
- "timeout": no answer for longer than the client waits;
- "drop": the connection is closed without a reply;
- "empty": a well-formed completion whose content is empty;
- "garbage": status 200 with a body that is not JSON;
- "401": the key is refused, and echoed back in the error message (as some providers do).
"""
from __future__ import annotations

import json
import random
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


class Stub:
    FAULTS = ("500", "429", "timeout", "drop", "empty", "garbage", "401")

    def __init__(self, reply: Callable[[dict], str] = lambda body: "positive", delay_s: float = 0.05,
                 faults: dict[str, float] | None = None, seed: int = 0, hang_s: float = 3.0, retry_after_s: float = 0.05):
        self.reply = reply
        self.delay_s = delay_s
        self.faults = dict(faults or {})
        unknown = set(self.faults) - set(self.FAULTS)
        assert not unknown, f"unknown faults {unknown}"
        self.rng = random.Random(seed)
        self.hang_s = hang_s
        self.retry_after_s = retry_after_s
        self.lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0
        self.served = 0
        self.requests = 0
        self.injected = {k: 0 for k in self.FAULTS}
        self.auth_headers: set[str] = set()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, data: bytes, headers: dict | None = None):
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                with stub.lock:
                    stub.requests += 1
                    stub.auth_headers.add(self.headers.get("authorization", ""))
                    fault = stub._draw()
                    if fault:
                        stub.injected[fault] += 1
                if fault == "401":
                    echoed = json.dumps({"error": {"message": "Incorrect API key provided: "
                                                   + self.headers.get("authorization", "").removeprefix("Bearer "),
                                                   "type": "invalid_request_error"}})
                    return self._send(401, echoed.encode())
                if fault == "500":
                    return self._send(500, b'{"error": {"message": "injected internal error", "type": "server_error"}}')
                if fault == "429":
                    return self._send(429, b'{"error": {"message": "injected rate limit", "type": "rate_limit"}}',
                                      {"retry-after": str(stub.retry_after_s)})
                if fault == "timeout":
                    time.sleep(stub.hang_s)  # the client has given up by now
                    self.close_connection = True
                    return
                if fault == "drop":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if fault == "garbage":
                    return self._send(200, b"<html>502 Bad Gateway</html> \x00\xff garbage")
                with stub.lock:
                    stub.in_flight += 1
                    stub.peak = max(stub.peak, stub.in_flight)
                try:
                    time.sleep(stub.delay_s)
                    text = "" if fault == "empty" else stub.reply(body)
                finally:
                    with stub.lock:
                        stub.in_flight -= 1
                        stub.served += 1
                data = json.dumps({
                    "id": "stub", "object": "chat.completion", "created": int(time.time()), "model": body.get("model"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
                }).encode()
                self._send(200, data)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):  # a client that gave up (timeout): expected here
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _draw(self) -> str | None:
        """One fault for this request, or None (called under the lock)."""
        x = self.rng.random()
        for kind, rate in self.faults.items():
            if x < rate:
                return kind
            x -= rate
        return None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> "Stub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
