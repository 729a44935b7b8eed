"""A local mock of the providers' HTTP APIs, speaking their wire formats (streams included).

Runs in a thread of the test process on 127.0.0.1; the proxy under test is pointed at it with
UPSTREAM_<NAME>. Behaviour is chosen by the requested model name, so a test drives it through
the real SDKs without any side channel:

- ``*-error-400`` / ``*-error-429`` / ``*-error-500``: that HTTP error with the provider's body
- ``*-cut``: a stream that stops mid-way (connection closed without the final chunk)
- ``*-stream-error``: an error event inside a stream
- ``*-slow``: chunks 150 ms apart (default 40 ms)
Every request is kept in ``requests`` (method, path, headers, body) for assertions.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REPLY_WORDS = ["The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", "."]
REPLY_TEXT = "".join(REPLY_WORDS)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class MockUpstream:
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[Received] = field(default_factory=list)
    chunk_delay: float = 0.04

    def __post_init__(self) -> None:
        mock = self

        class Handler(_Handler):
            upstream = mock

        self.server = ThreadingHTTPServer((self.host, self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "MockUpstream":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def last(self, path_part: str = "") -> Received:
        for received in reversed(self.requests):
            if path_part in received.path:
                return received
        raise AssertionError(f"no request to {path_part!r} reached the mock")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream: MockUpstream

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    # -- plumbing ------------------------------------------------------------------------------
    def _read(self) -> bytes:
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _json(self, status: int, doc: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _start_stream(self, content_type: str = "text/event-stream") -> None:
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("transfer-encoding", "chunked")
        self.send_header("x-request-id", "req_mock_stream")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _cut(self) -> None:
        """Close the connection mid-stream, without the terminating chunk."""
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True

    def _delay(self, model: str) -> float:
        return 0.15 if model.endswith("-slow") else self.upstream.chunk_delay

    # -- routes --------------------------------------------------------------------------------
    def do_POST(self) -> None:
        body = self._read()
        self.upstream.requests.append(Received("POST", self.path, {k.lower(): v for k, v in
                                                                   self.headers.items()}, body))
        try:
            doc = json.loads(body) if body else {}
        except ValueError:
            self._json(400, {"error": {"message": "invalid JSON", "type": "invalid_request_error"}})
            return
        path = self.path.split("?", 1)[0]
        if path.endswith("/chat/completions"):
            self._openai_chat(doc)
        else:
            self._json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})

    def do_GET(self) -> None:
        self.upstream.requests.append(Received("GET", self.path, dict(self.headers.items()), b""))
        self._json(200, {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model"}]})

    # -- OpenAI chat completions ---------------------------------------------------------------
    def _openai_error(self, model: str) -> bool:
        for code in (400, 401, 404, 429, 500):
            if model.endswith(f"-error-{code}"):
                headers = {"x-request-id": "req_mock_error"}
                if code == 429:
                    headers["retry-after"] = "1"
                self._json(code, {"error": {"message": f"mock error {code} for {model}",
                                            "type": "invalid_request_error" if code < 500 else "server_error",
                                            "param": None, "code": f"mock_{code}"}}, headers)
                return True
        return False

    def _openai_chat(self, doc: dict[str, Any]) -> None:
        model = str(doc.get("model") or "")
        if self._openai_error(model):
            return
        messages = doc.get("messages") or []
        prompt_tokens = 3 + sum(len(str(m.get("content", "")).split()) for m in messages)
        completion_tokens = len(REPLY_WORDS)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens,
                 "prompt_tokens_details": {"cached_tokens": 0},
                 "completion_tokens_details": {"reasoning_tokens": 0}}
        served = model + "-2024-07-18" if model == "gpt-4o-mini" else model
        if not doc.get("stream"):
            self._json(200, {
                "id": "chatcmpl-mock", "object": "chat.completion", "created": int(time.time()),
                "model": served,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY_TEXT,
                                                     "refusal": None},
                             "finish_reason": "stop", "logprobs": None}],
                "usage": usage,
            }, {"x-request-id": "req_mock_1", "x-ratelimit-remaining-requests": "4999",
                "x-ratelimit-limit-requests": "5000"})
            return
        include_usage = bool((doc.get("stream_options") or {}).get("include_usage"))
        self._start_stream()

        def send(payload: dict[str, Any]) -> None:
            self._chunk(f"data: {json.dumps(payload)}\n\n".encode())

        base = {"id": "chatcmpl-mock", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": served}
        send({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                   "finish_reason": None}]})
        for i, word in enumerate(REPLY_WORDS):
            time.sleep(self._delay(model))
            if model.endswith("-cut") and i == 4:
                self._cut()
                return
            if model.endswith("-stream-error") and i == 3:
                send({"error": {"message": "mock failure inside the stream", "type": "server_error"}})
                self._end_stream()
                return
            send({**base, "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}],
                  **({"usage": None} if include_usage else {})})
        send({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
              **({"usage": None} if include_usage else {})})
        if include_usage:
            send({**base, "choices": [], "usage": usage})
        self._chunk(b"data: [DONE]\n\n")
        self._end_stream()
