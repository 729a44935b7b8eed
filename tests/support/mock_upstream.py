"""A local mock of the providers' HTTP APIs, speaking their wire formats (streams included).

Runs in a thread of the test process on 127.0.0.1; the proxy under test is pointed at it with
UPSTREAM_<NAME>. Behaviour is chosen by the requested model name, so a test drives it through
the real SDKs without any side channel. Suffixes combine (``claude-3-5-haiku-latest-think-cut``):

- ``*-error-<code>`` (any HTTP status, e.g. 400, 404, 429, 500, 529): that HTTP error with the
  provider's error body shape (and ``retry-after`` for 429)
- ``*-cut``: a stream that stops mid-way (connection closed after 4 pieces of output, without
  the terminating chunk)
- ``*-stream-error``: the provider's error event / line inside a stream, after 3 pieces
- ``*-slow``: chunks 150 ms apart (default ``chunk_delay``, 40 ms)
- ``*-tools``: the answer is one call of the first tool the request declares (``TOOL_NAME``
  when it declares none) with ``TOOL_ARGUMENTS``, streamed as the provider streams tool calls
- ``*-think``: reasoning first (Anthropic thinking block, Gemini ``thought`` parts, Ollama
  ``thinking``, OpenAI reasoning tokens in usage and a Responses reasoning summary)
- ``*-cache``: non-zero cache counts (``CACHE_READ_TOKENS``, and for Anthropic also
  ``CACHE_CREATION_TOKENS``)

The served model (in the response body) is the requested one without these suffixes, with a
dated version for a few aliases (``gpt-4o-mini`` -> ``gpt-4o-mini-2024-07-18``): so a known
model keeps a known price whatever behaviour the test asked for.

Token counts are deterministic: prompt tokens = 3 + the number of whitespace-separated words
of the input text (messages / system / instructions / contents / prompt; embeddings: just the
words), completion tokens = the number of pieces of output (``REPLY_WORDS``: 10 per choice,
``TOOL_ARGUMENT_FRAGMENTS``: 5, ``JSON_REPLY_PIECES``: 3) plus ``THINKING_WORDS`` (8) when
thinking, except Gemini, whose ``candidatesTokenCount`` leaves thoughts out
(``thoughtsTokenCount``). Cache reads are inside the prompt count for OpenAI and Gemini and
outside it for Anthropic, as the providers count them.

Every request is kept in ``requests`` (method, path with query, lower-cased headers, body),
with the status it got and the body bytes the mock sent (de-chunked) in ``sent``.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

REPLY_WORDS = ["The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", "."]
REPLY_TEXT = "".join(REPLY_WORDS)
THINKING_WORDS = ["Let", " me", " recall", " the", " classic", " pangram", " first", "."]
THINKING_TEXT = "".join(THINKING_WORDS)
TOOL_NAME = "get_weather"
TOOL_ARGUMENTS = {"location": "Paris", "unit": "celsius"}
TOOL_ARGUMENT_FRAGMENTS = ['{"location', '": "Par', 'is", "u', 'nit": "cel', 'sius"}']
JSON_REPLY_PIECES = ['{"answer":', ' "The quick brown fox jumps', ' over the lazy dog."}']
JSON_REPLY = "".join(JSON_REPLY_PIECES)
CACHE_READ_TOKENS = 1024
CACHE_CREATION_TOKENS = 256
EMBEDDING_DIMENSIONS = 8
CUT_AFTER = 4  # pieces of output sent before a ``-cut`` stream is closed
ERROR_AFTER = 3  # pieces of output sent before a ``-stream-error`` error event
SIGNATURE = "EqQBCkYIBxgCKkBtb2NrLXNpZ25hdHVyZS1mb3ItdGhpbmtpbmctYmxvY2tz"
SERVED_MODELS = {
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4o": "gpt-4o-2024-08-06",
    "o4-mini": "o4-mini-2025-04-16",
    "claude-3-5-haiku-latest": "claude-3-5-haiku-20241022",
    "claude-3-7-sonnet-latest": "claude-3-7-sonnet-20250219",
}
ANTHROPIC_ERRORS = {400: "invalid_request_error", 401: "authentication_error",
                    403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                    429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}
GOOGLE_STATUSES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                   404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
                   503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
STREAM_ERROR_MESSAGE = "mock failure inside the stream"
_BEHAVIOURS = ("-stream-error", "-slow", "-cut", "-tools", "-think", "-cache")
_ERROR_SUFFIX = re.compile(r"-error-(\d{3})$")
_GEMINI_PATH = re.compile(r"/models/([^/:]+):([A-Za-z]+)$")


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int | None = None  # the status the mock answered with
    sent: bytearray = field(default_factory=bytearray)  # response body bytes, de-chunked

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Behaviour:
    """What the requested model name asks the mock to do."""

    model: str
    base: str
    error: int | None = None
    cut: bool = False
    stream_error: bool = False
    slow: bool = False
    tools: bool = False
    think: bool = False
    cache: bool = False

    @property
    def served(self) -> str:
        return SERVED_MODELS.get(self.base, self.base)


def behaviour(model: str) -> Behaviour:
    """``gpt-4o-mini-tools-cut`` -> base ``gpt-4o-mini`` with tools and cut set."""
    found = Behaviour(model=model, base=model)
    changed = True
    while changed:
        changed = False
        match = _ERROR_SUFFIX.search(found.base)
        if match:
            found.error = int(match.group(1))
            found.base = found.base[:match.start()]
            changed = True
            continue
        for suffix in _BEHAVIOURS:
            if found.base.endswith(suffix):
                setattr(found, suffix[1:].replace("-", "_"), True)
                found.base = found.base[:-len(suffix)]
                changed = True
                break
    return found


def text_of(value: Any) -> str:
    """All the text of a message / content / part structure, in any provider's shape."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(text_of(item) for item in value)
    if isinstance(value, dict):
        return " ".join(text_of(value.get(key)) for key in ("text", "content", "parts"))
    return ""


def words(*values: Any) -> int:
    return sum(len(text_of(value).split()) for value in values)


def embedding(index: int) -> list[float]:
    return [round((index + 1) * 0.01 + i * 0.1, 4) for i in range(EMBEDDING_DIMENSIONS)]


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
    received: Received

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    # -- plumbing ------------------------------------------------------------------------------
    def _read(self) -> bytes:
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _record(self, method: str, body: bytes) -> None:
        self.received = Received(method, self.path, {k.lower(): v for k, v in self.headers.items()},
                                 body)
        self.upstream.requests.append(self.received)

    def _send(self, status: int, body: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        self.received.status = status
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)
        self.received.sent += body

    def _json(self, status: int, doc: Any, headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
        self._send(status, json.dumps(doc).encode(), content_type, headers)

    def _start_stream(self, content_type: str = "text/event-stream",
                      headers: dict[str, str] | None = None) -> None:
        self.received.status = 200
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("transfer-encoding", "chunked")
        for key, value in (headers if headers is not None else
                           {"x-request-id": "req_mock_stream"}).items():
            self.send_header(key, value)
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()
        self.received.sent += data

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _cut(self) -> None:
        """Close the connection mid-stream, without the terminating chunk."""
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True

    def _play(self, plan: Behaviour, events: list[tuple[bytes, bool]], error_event: bytes) -> None:
        """Sends a stream's events, each in its own HTTP chunk, waiting ``chunk_delay`` before
        each one that carries output (``True``); cuts or fails it mid-way when asked to."""
        delay = 0.15 if plan.slow else self.upstream.chunk_delay
        pieces = 0
        for data, output in events:
            if output:
                if plan.cut and pieces == CUT_AFTER:
                    time.sleep(delay)
                    self._cut()
                    return
                if plan.stream_error and pieces == ERROR_AFTER:
                    time.sleep(delay)
                    # The error event and the end of the stream in one write, as a server that
                    # fails and closes the response does: no window for the client to hang up.
                    self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(error_event), error_event))
                    self.wfile.flush()
                    self.received.sent += error_event
                    return
                time.sleep(delay)
                pieces += 1
            self._chunk(data)
        self._end_stream()

    # -- routes --------------------------------------------------------------------------------
    def do_POST(self) -> None:
        body = self._read()
        self._record("POST", body)
        try:
            doc = json.loads(body) if body else {}
        except ValueError:
            self._json(400, {"error": {"message": "invalid JSON", "type": "invalid_request_error"}})
            return
        path = unquote(self.path.split("?", 1)[0])
        gemini = _GEMINI_PATH.search(path)
        if gemini and (path.startswith(("/v1beta/", "/v1/", "/v1alpha/"))):
            self._gemini(doc, gemini.group(1), gemini.group(2))
        elif path.endswith("/chat/completions"):
            self._openai_chat(doc)
        elif path.endswith("/responses"):
            self._openai_responses(doc)
        elif path.endswith("/embeddings"):
            self._openai_embeddings(doc)
        elif path.endswith("/completions"):
            self._openai_completions(doc)
        elif path.endswith("/v1/messages"):
            self._anthropic_messages(doc)
        elif path in ("/api/chat", "/api/generate"):
            self._ollama_generation(doc, chat=path == "/api/chat")
        elif path in ("/api/embed", "/api/embeddings"):
            self._ollama_embed(doc, legacy=path == "/api/embeddings")
        else:
            self._json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})

    def do_GET(self) -> None:
        self._record("GET", b"")
        if self.path.split("?", 1)[0] == "/api/tags":
            self._json(200, {"models": [{
                "name": "llama3.2:latest", "model": "llama3.2:latest",
                "modified_at": "2025-01-10T09:00:00.000000000Z", "size": 2019393189,
                "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
                "details": {"parent_model": "", "format": "gguf", "family": "llama",
                            "families": ["llama"], "parameter_size": "3.2B",
                            "quantization_level": "Q4_K_M"}}]},
                content_type="application/json; charset=utf-8")
            return
        self._json(200, {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model"}]})

    # -- OpenAI --------------------------------------------------------------------------------
    def _openai_error(self, plan: Behaviour) -> bool:
        code = plan.error
        if code is None:
            return False
        headers = {"x-request-id": "req_mock_error"}
        if code == 429:
            headers["retry-after"] = "1"
            headers["x-ratelimit-remaining-requests"] = "0"
        self._json(code, {"error": {"message": f"mock error {code} for {plan.model}",
                                    "type": "invalid_request_error" if code < 500 else "server_error",
                                    "param": None, "code": f"mock_{code}"}}, headers)
        return True

    @staticmethod
    def _openai_headers(request_id: str) -> dict[str, str]:
        return {"x-request-id": request_id, "openai-processing-ms": "42",
                "x-ratelimit-limit-requests": "5000", "x-ratelimit-remaining-requests": "4999",
                "x-ratelimit-limit-tokens": "2000000", "x-ratelimit-remaining-tokens": "1999990",
                "x-ratelimit-reset-requests": "12ms", "x-ratelimit-reset-tokens": "0s"}

    @staticmethod
    def _tool_name(doc: dict[str, Any]) -> str:
        for tool in doc.get("tools") or []:
            if not isinstance(tool, dict):
                continue
            fn = tool.get("function") if isinstance(tool.get("function"), dict) else tool
            declarations = tool.get("functionDeclarations") or tool.get("function_declarations")
            if isinstance(declarations, list) and declarations:
                fn = declarations[0]
            if isinstance(fn, dict) and isinstance(fn.get("name"), str):
                return fn["name"]
        return TOOL_NAME

    @staticmethod
    def _is_json_mode(doc: dict[str, Any]) -> bool:
        fmt = doc.get("response_format") or (doc.get("text") or {}).get("format") or {}
        return isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema")

    def _openai_usage(self, plan: Behaviour, prompt: int, completion: int,
                      responses: bool = False) -> dict[str, Any]:
        cached = CACHE_READ_TOKENS if plan.cache else 0
        reasoning = len(THINKING_WORDS) if plan.think else 0
        prompt += cached
        completion += reasoning
        if responses:
            return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached},
                    "output_tokens": completion,
                    "output_tokens_details": {"reasoning_tokens": reasoning},
                    "total_tokens": prompt + completion}
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0,
                                              "accepted_prediction_tokens": 0,
                                              "rejected_prediction_tokens": 0}}

    def _openai_chat(self, doc: dict[str, Any]) -> None:
        plan = behaviour(str(doc.get("model") or ""))
        if self._openai_error(plan):
            return
        groq = self.path.startswith("/openai/")  # Groq's API lives under /openai/v1
        n = doc.get("n") if isinstance(doc.get("n"), int) and doc["n"] > 0 else 1
        prompt_tokens = 3 + words(doc.get("messages"))
        tool_name = self._tool_name(doc)
        call_id = "call_mock_1"
        pieces = self._reply_pieces(plan, doc)
        usage = self._openai_usage(plan, prompt_tokens, n * len(pieces))
        finish = "tool_calls" if plan.tools else "stop"
        created = int(time.time())
        if not doc.get("stream"):
            choices = []
            for index in range(n):
                message: dict[str, Any] = {"role": "assistant", "content": "".join(pieces),
                                           "refusal": None, "annotations": []}
                if plan.tools:
                    message["content"] = None
                    message["tool_calls"] = [{"id": call_id, "type": "function", "function": {
                        "name": tool_name, "arguments": "".join(pieces)}}]
                choices.append({"index": index, "message": message, "logprobs": None,
                                "finish_reason": finish})
            reply = {"id": "chatcmpl-mock", "object": "chat.completion", "created": created,
                     "model": plan.served, "choices": choices, "usage": usage,
                     "service_tier": "default", "system_fingerprint": "fp_mock"}
            if groq:
                reply["x_groq"] = {"id": "req_mock_groq"}
            self._json(200, reply, {"x-request-id": "req_mock_1", "x-ratelimit-remaining-requests": "4999",
                                    "x-ratelimit-limit-requests": "5000"})
            return
        include_usage = bool((doc.get("stream_options") or {}).get("include_usage"))
        extra = {"usage": None} if include_usage else {}
        base = {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": created,
                "model": plan.served, "system_fingerprint": "fp_mock"}

        def event(payload: dict[str, Any]) -> bytes:
            return f"data: {json.dumps(payload)}\n\n".encode()

        events: list[tuple[bytes, bool]] = []
        first: dict[str, Any] = {**base, "choices": [
            {"index": i, "delta": {"role": "assistant", "content": "", "refusal": None},
             "logprobs": None, "finish_reason": None} for i in range(n)], **extra}
        if groq:
            first["x_groq"] = {"id": "req_mock_groq"}
        if plan.tools:  # the name comes first, then the arguments in fragments
            for i in range(n):
                events.append((event({**base, "choices": [{"index": i, "delta": {
                    "role": "assistant", "content": None, "tool_calls": [
                        {"index": 0, "id": call_id, "type": "function",
                         "function": {"name": tool_name, "arguments": ""}}], "refusal": None},
                    "logprobs": None, "finish_reason": None}], **extra}), True))
        else:
            events.append((event(first), False))
        for piece in pieces:
            for i in range(n):
                delta: dict[str, Any] = {"content": piece}
                if plan.tools:
                    delta = {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
                events.append((event({**base, "choices": [{"index": i, "delta": delta,
                                                           "logprobs": None, "finish_reason": None}],
                                      **extra}), True))
        for i in range(n):
            last: dict[str, Any] = {**base, "choices": [{"index": i, "delta": {}, "logprobs": None,
                                                         "finish_reason": finish}], **extra}
            if groq and i == n - 1:
                last["x_groq"] = {"id": "req_mock_groq", "usage": {
                    "queue_time": 0.01, "prompt_tokens": usage["prompt_tokens"], "prompt_time": 0.002,
                    "completion_tokens": usage["completion_tokens"], "completion_time": 0.05,
                    "total_tokens": usage["total_tokens"], "total_time": 0.052}}
            events.append((event(last), False))
        if include_usage:
            events.append((event({**base, "choices": [], "usage": usage}), False))
        events.append((b"data: [DONE]\n\n", False))
        headers = self._openai_headers("req_mock_groq" if groq else "req_mock_stream")
        self._start_stream("text/event-stream; charset=utf-8", headers)
        self._play(plan, events, event({"error": {"message": STREAM_ERROR_MESSAGE,
                                                  "type": "server_error", "param": None,
                                                  "code": "server_error"}}))

    def _openai_completions(self, doc: dict[str, Any]) -> None:
        plan = behaviour(str(doc.get("model") or ""))
        if self._openai_error(plan):
            return
        prompt_tokens = 3 + words(doc.get("prompt"))
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(REPLY_WORDS),
                 "total_tokens": prompt_tokens + len(REPLY_WORDS)}
        base = {"id": "cmpl-mock", "object": "text_completion", "created": int(time.time()),
                "model": plan.served}
        if not doc.get("stream"):
            self._json(200, {**base, "choices": [{"text": REPLY_TEXT, "index": 0, "logprobs": None,
                                                  "finish_reason": "stop"}], "usage": usage},
                       self._openai_headers("req_mock_completion"))
            return

        def event(payload: dict[str, Any]) -> bytes:
            return f"data: {json.dumps(payload)}\n\n".encode()

        events = [(event({**base, "choices": [{"text": word, "index": 0, "logprobs": None,
                                               "finish_reason": None}]}), True)
                  for word in REPLY_WORDS]
        events.append((event({**base, "choices": [{"text": "", "index": 0, "logprobs": None,
                                                   "finish_reason": "stop"}]}), False))
        if (doc.get("stream_options") or {}).get("include_usage"):
            events.append((event({**base, "choices": [], "usage": usage}), False))
        events.append((b"data: [DONE]\n\n", False))
        self._start_stream("text/event-stream", self._openai_headers("req_mock_completion_stream"))
        self._play(plan, events, event({"error": {"message": STREAM_ERROR_MESSAGE,
                                                  "type": "server_error", "param": None,
                                                  "code": None}}))

    def _openai_embeddings(self, doc: dict[str, Any]) -> None:
        plan = behaviour(str(doc.get("model") or ""))
        if self._openai_error(plan):
            return
        inputs = doc.get("input")
        items = inputs if isinstance(inputs, list) and not all(isinstance(i, int) for i in inputs) else [inputs]
        as_base64 = doc.get("encoding_format") == "base64"
        data = []
        for index, _item in enumerate(items):
            vector: Any = embedding(index)
            if as_base64:
                vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = sum(len(i) if isinstance(i, list) else words(i) for i in items)
        self._json(200, {"object": "list", "data": data, "model": plan.served,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}},
                   self._openai_headers("req_mock_embeddings"))

    def _reply_pieces(self, plan: Any, doc: dict[str, Any]) -> list[str]:
        """What an OpenAI-style answer streams: tool-call arguments, a JSON object or words."""
        if plan.tools:
            return TOOL_ARGUMENT_FRAGMENTS
        if self._is_json_mode(doc):
            return JSON_REPLY_PIECES
        return REPLY_WORDS

    def _openai_responses(self, doc: dict[str, Any]) -> None:
        plan = behaviour(str(doc.get("model") or ""))
        if self._openai_error(plan):
            return
        prompt_tokens = 3 + words(doc.get("instructions"), doc.get("input"))
        tool_name = self._tool_name(doc)
        pieces = self._reply_pieces(plan, doc)
        usage = self._openai_usage(plan, prompt_tokens, len(pieces), responses=True)
        created = int(time.time())
        reasoning_item = {"id": "rs_mock_1", "type": "reasoning",
                          "summary": [{"type": "summary_text", "text": THINKING_TEXT}]}
        if plan.tools:
            item: dict[str, Any] = {"id": "fc_mock_1", "type": "function_call", "status": "completed",
                                    "arguments": "".join(pieces), "call_id": "call_mock_1",
                                    "name": tool_name}
        else:
            item = {"id": "msg_mock_1", "type": "message", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "annotations": [], "logprobs": [],
                                 "text": "".join(pieces)}]}
        output = ([reasoning_item] if plan.think else []) + [item]

        def response(status: str, out: list[Any], use: Any) -> dict[str, Any]:
            return {"id": "resp_mock_1", "object": "response", "created_at": created,
                    "status": status, "background": False, "error": None,
                    "incomplete_details": None, "instructions": doc.get("instructions"),
                    "max_output_tokens": doc.get("max_output_tokens"), "model": plan.served,
                    "output": out, "parallel_tool_calls": True, "previous_response_id": None,
                    "reasoning": {"effort": "low" if plan.think else None, "summary": None},
                    "store": True, "temperature": doc.get("temperature", 1.0),
                    "text": {"format": {"type": "text"}, "verbosity": "medium"},
                    "tool_choice": doc.get("tool_choice", "auto"), "tools": doc.get("tools") or [],
                    "top_p": 1.0, "truncation": "disabled", "usage": use, "user": None,
                    "metadata": {}}

        if not doc.get("stream"):
            self._json(200, response("completed", output, usage),
                       self._openai_headers("req_mock_responses"))
            return
        sequence = iter(range(10_000))

        def event(kind: str, **payload: Any) -> bytes:
            data = {"type": kind, "sequence_number": next(sequence), **payload}
            return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()

        events = [(event("response.created", response=response("in_progress", [], None)), False),
                  (event("response.in_progress", response=response("in_progress", [], None)), False)]
        index = 0
        if plan.think:
            events.append((event("response.output_item.added", output_index=0,
                                  item={**reasoning_item, "summary": []}), True))
            events.append((event("response.reasoning_summary_part.added", item_id="rs_mock_1",
                                 output_index=0, summary_index=0,
                                 part={"type": "summary_text", "text": ""}), False))
            for word in THINKING_WORDS:
                events.append((event("response.reasoning_summary_text.delta", item_id="rs_mock_1",
                                     output_index=0, summary_index=0, delta=word), True))
            events.append((event("response.reasoning_summary_text.done", item_id="rs_mock_1",
                                 output_index=0, summary_index=0, text=THINKING_TEXT), False))
            events.append((event("response.output_item.done", output_index=0,
                                 item=reasoning_item), False))
            index = 1
        if plan.tools:
            events.append((event("response.output_item.added", output_index=index,
                                 item={**item, "arguments": "", "status": "in_progress"}), True))
            for piece in pieces:
                events.append((event("response.function_call_arguments.delta", item_id="fc_mock_1",
                                     output_index=index, delta=piece), True))
            events.append((event("response.function_call_arguments.done", item_id="fc_mock_1",
                                 output_index=index, arguments="".join(pieces)), False))
        else:
            events.append((event("response.output_item.added", output_index=index,
                                 item={**item, "status": "in_progress", "content": []}), False))
            events.append((event("response.content_part.added", item_id="msg_mock_1",
                                 output_index=index, content_index=0,
                                 part={"type": "output_text", "annotations": [], "logprobs": [],
                                       "text": ""}), False))
            for piece in pieces:
                events.append((event("response.output_text.delta", item_id="msg_mock_1",
                                     output_index=index, content_index=0, delta=piece,
                                     logprobs=[]), True))
            events.append((event("response.output_text.done", item_id="msg_mock_1",
                                 output_index=index, content_index=0, text="".join(pieces),
                                 logprobs=[]), False))
            events.append((event("response.content_part.done", item_id="msg_mock_1",
                                 output_index=index, content_index=0,
                                 part=item["content"][0]), False))
        events.append((event("response.output_item.done", output_index=index, item=item), False))
        events.append((event("response.completed", response=response("completed", output, usage)),
                       False))
        self._start_stream("text/event-stream; charset=utf-8",
                           self._openai_headers("req_mock_responses_stream"))
        # The documented error event has code/message at the top; the API (and openai-python,
        # which raises only for this shape) nests them under "error".
        self._play(plan, events, event("error", error={"type": "server_error", "code": "server_error",
                                                       "message": STREAM_ERROR_MESSAGE, "param": None}))

    # -- Anthropic -----------------------------------------------------------------------------
    @staticmethod
    def _anthropic_headers() -> dict[str, str]:
        return {"request-id": "req_mock_anthropic", "anthropic-organization-id": "org-mock",
                "anthropic-ratelimit-requests-limit": "4000",
                "anthropic-ratelimit-requests-remaining": "3999",
                "anthropic-ratelimit-requests-reset": "2025-01-01T00:00:01Z",
                "anthropic-ratelimit-tokens-limit": "480000",
                "anthropic-ratelimit-tokens-remaining": "479000",
                "anthropic-ratelimit-tokens-reset": "2025-01-01T00:00:01Z"}

    def _anthropic_messages(self, doc: dict[str, Any]) -> None:
        plan = behaviour(str(doc.get("model") or ""))
        if plan.error is not None:
            kind = ANTHROPIC_ERRORS.get(plan.error, "api_error")
            headers = {"request-id": "req_mock_anthropic_error", "x-should-retry": "false"}
            if plan.error == 429:
                headers["retry-after"] = "1"
                headers["anthropic-ratelimit-requests-remaining"] = "0"
            self._json(plan.error, {"type": "error", "error": {
                "type": kind, "message": f"mock error {plan.error} for {plan.model}"},
                "request_id": "req_mock_anthropic_error"}, headers)
            return
        input_tokens = 3 + words(doc.get("system"), doc.get("messages"))
        cache_read = CACHE_READ_TOKENS if plan.cache else 0
        cache_write = CACHE_CREATION_TOKENS if plan.cache else 0
        pieces = TOOL_ARGUMENT_FRAGMENTS if plan.tools else REPLY_WORDS
        output_tokens = len(pieces) + (len(THINKING_WORDS) if plan.think else 0)
        stop_reason = "tool_use" if plan.tools else "end_turn"
        tool_name = self._tool_name(doc)
        usage = {"input_tokens": input_tokens, "cache_creation_input_tokens": cache_write,
                 "cache_read_input_tokens": cache_read, "output_tokens": output_tokens,
                 "service_tier": "standard"}
        message_id = "msg_01MockAnthropicMessage"
        if not doc.get("stream"):
            content: list[dict[str, Any]] = []
            if plan.think:
                content.append({"type": "thinking", "thinking": THINKING_TEXT, "signature": SIGNATURE})
            if plan.tools:
                content.append({"type": "tool_use", "id": "toolu_01Mock", "name": tool_name,
                                "input": TOOL_ARGUMENTS})
            else:
                content.append({"type": "text", "text": REPLY_TEXT})
            self._json(200, {"id": message_id, "type": "message", "role": "assistant",
                             "model": plan.served, "content": content, "stop_reason": stop_reason,
                             "stop_sequence": None, "usage": usage}, self._anthropic_headers())
            return

        def event(kind: str, **payload: Any) -> bytes:
            return f"event: {kind}\ndata: {json.dumps({'type': kind, **payload})}\n\n".encode()

        events = [(event("message_start", message={
            "id": message_id, "type": "message", "role": "assistant", "model": plan.served,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {**usage, "output_tokens": 1}}), False)]
        index = 0
        if plan.think:
            events.append((event("content_block_start", index=0, content_block={
                "type": "thinking", "thinking": "", "signature": ""}), False))
            events.append((event("ping"), False))
            for word in THINKING_WORDS:
                events.append((event("content_block_delta", index=0, delta={
                    "type": "thinking_delta", "thinking": word}), True))
            events.append((event("content_block_delta", index=0, delta={
                "type": "signature_delta", "signature": SIGNATURE}), False))
            events.append((event("content_block_stop", index=0), False))
            index = 1
        if plan.tools:
            events.append((event("content_block_start", index=index, content_block={
                "type": "tool_use", "id": "toolu_01Mock", "name": tool_name, "input": {}}), True))
            events.append((event("content_block_delta", index=index, delta={
                "type": "input_json_delta", "partial_json": ""}), False))
            for piece in pieces:
                events.append((event("content_block_delta", index=index, delta={
                    "type": "input_json_delta", "partial_json": piece}), True))
        else:
            events.append((event("content_block_start", index=index, content_block={
                "type": "text", "text": ""}), False))
            for piece in pieces:
                events.append((event("content_block_delta", index=index, delta={
                    "type": "text_delta", "text": piece}), True))
        if not plan.think:
            events.insert(2, (event("ping"), False))  # after the first content_block_start
        events.append((event("content_block_stop", index=index), False))
        events.append((event("message_delta", delta={"stop_reason": stop_reason,
                                                     "stop_sequence": None},
                             usage={"output_tokens": output_tokens}), False))
        events.append((event("message_stop"), False))
        self._start_stream("text/event-stream; charset=utf-8", self._anthropic_headers())
        self._play(plan, events, event("error", error={"type": "overloaded_error",
                                                       "message": STREAM_ERROR_MESSAGE}))

    # -- Gemini --------------------------------------------------------------------------------
    def _gemini(self, doc: dict[str, Any], model: str, method: str) -> None:
        plan = behaviour(model)
        if plan.error is not None:
            self._json(plan.error, {"error": {
                "code": plan.error, "message": f"mock error {plan.error} for models/{plan.model}",
                "status": GOOGLE_STATUSES.get(plan.error, "UNKNOWN")}},
                content_type="application/json; charset=UTF-8")
            return
        if method in ("embedContent", "batchEmbedContents"):
            requests = doc.get("requests") if method == "batchEmbedContents" else [doc]
            vectors = [{"values": embedding(i)} for i in range(len(requests or []))]
            reply = {"embeddings": vectors} if method == "batchEmbedContents" else {"embedding": vectors[0]}
            self._json(200, reply, content_type="application/json; charset=UTF-8")
            return
        if method not in ("generateContent", "streamGenerateContent"):
            self._json(404, {"error": {"code": 404, "message": f"no method {method}",
                                       "status": "NOT_FOUND"}})
            return
        system = doc.get("systemInstruction") or doc.get("system_instruction")
        prompt = 3 + words(system, doc.get("contents"))
        cached = CACHE_READ_TOKENS if plan.cache else 0
        prompt += cached
        config = doc.get("generationConfig") or {}
        json_mode = config.get("responseMimeType") == "application/json"
        tool_name = self._tool_name(doc)
        thoughts = THINKING_WORDS if plan.think else []
        answer = [] if plan.tools else (JSON_REPLY_PIECES if json_mode else REPLY_WORDS)
        candidates_total = len(TOOL_ARGUMENT_FRAGMENTS) if plan.tools else len(answer)

        def usage(candidates: int, thought: int) -> dict[str, Any]:
            meta: dict[str, Any] = {"promptTokenCount": prompt}
            if candidates:
                meta["candidatesTokenCount"] = candidates
            meta["totalTokenCount"] = prompt + candidates + thought
            if cached:
                meta["cachedContentTokenCount"] = cached
                meta["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached}]
            meta["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
            if thought:
                meta["thoughtsTokenCount"] = thought
            return meta

        def response(parts: list[dict[str, Any]], finish: bool, meta: dict[str, Any]) -> dict[str, Any]:
            candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
            if finish:
                candidate["finishReason"] = "STOP"
            candidate["index"] = 0
            return {"candidates": [candidate], "usageMetadata": meta,
                    "modelVersion": plan.served, "responseId": "mockResponseId01"}

        call_part = {"functionCall": {"name": tool_name, "args": TOOL_ARGUMENTS}}
        if method == "generateContent":
            parts: list[dict[str, Any]] = []
            if thoughts:
                parts.append({"text": THINKING_TEXT, "thought": True})
            parts.append(call_part if plan.tools else {"text": "".join(answer)})
            self._json(200, response(parts, True, usage(candidates_total, len(thoughts))),
                       content_type="application/json; charset=UTF-8")
            return
        sse = "alt=sse" in self.path.split("?", 1)[-1]
        chunks: list[dict[str, Any]] = []
        for i, word in enumerate(thoughts):
            chunks.append(response([{"text": word, "thought": True}], False, usage(0, i + 1)))
        if plan.tools:
            chunks.append(response([call_part], True, usage(candidates_total, len(thoughts))))
        for i, word in enumerate(answer):
            chunks.append(response([{"text": word}], i == len(answer) - 1,
                                   usage(i + 1, len(thoughts))))
        error_doc = {"error": {"code": 500, "message": STREAM_ERROR_MESSAGE, "status": "INTERNAL"}}
        if sse:
            events = [(f"data: {json.dumps(c)}\r\n\r\n".encode(), True) for c in chunks]
            self._start_stream("text/event-stream", {"x-goog-mock": "sse"})
            self._play(plan, events, f"data: {json.dumps(error_doc)}\r\n\r\n".encode())
            return
        # Without alt=sse the stream is one JSON array, sent element by element.
        events = [((b"[" if i == 0 else b",\r\n") + json.dumps(c).encode(), True)
                  for i, c in enumerate(chunks)]
        events.append((b"]", False))
        self._start_stream("application/json; charset=UTF-8", {"x-goog-mock": "array"})
        self._play(plan, events, b",\r\n" + json.dumps(error_doc).encode() + b"]")

    # -- Ollama --------------------------------------------------------------------------------
    def _ollama_error(self, plan: Behaviour) -> bool:
        if plan.error is None:
            return False
        message = (f'model "{plan.model}" not found, try pulling it first' if plan.error == 404
                   else f"mock error {plan.error} for {plan.model}")
        self._json(plan.error, {"error": message}, content_type="application/json; charset=utf-8")
        return True

    def _ollama_generation(self, doc: dict[str, Any], chat: bool) -> None:
        plan = behaviour(str(doc.get("model") or ""))
        if self._ollama_error(plan):
            return
        served = plan.served
        if chat:
            prompt = 3 + words(doc.get("messages"))
        else:
            prompt = 3 + words(doc.get("system"), doc.get("prompt"))
        json_mode = bool(doc.get("format"))
        answer = [] if plan.tools else (JSON_REPLY_PIECES if json_mode else REPLY_WORDS)
        thoughts = THINKING_WORDS if plan.think else []
        eval_count = len(thoughts) + (len(TOOL_ARGUMENT_FRAGMENTS) if plan.tools else len(answer))
        tool_calls = [{"id": "call_mock_1", "function": {
            "index": 0, "name": self._tool_name(doc), "arguments": TOOL_ARGUMENTS}}]
        final = {"done": True, "done_reason": "stop", "total_duration": 1_250_000_000,
                 "load_duration": 50_000_000, "prompt_eval_count": prompt,
                 "prompt_eval_duration": 100_000_000, "eval_count": eval_count,
                 "eval_duration": 1_000_000_000}
        if not chat:
            final["context"] = list(range(1, prompt + eval_count + 1))
        stamp = "2025-01-10T09:00:00.%06dZ"

        def line(i: int, content: str = "", thinking: str | None = None,
                 tools: list[Any] | None = None, done: dict[str, Any] | None = None) -> dict[str, Any]:
            out: dict[str, Any] = {"model": served, "created_at": stamp % i}
            if chat:
                message: dict[str, Any] = {"role": "assistant", "content": content}
                if thinking is not None:
                    message["thinking"] = thinking
                if tools is not None:
                    message["tool_calls"] = tools
                out["message"] = message
            else:
                out["response"] = content
                if thinking is not None:
                    out["thinking"] = thinking
            return {**out, **(done or {"done": False})}

        stream = doc.get("stream", True) is not False  # Ollama streams unless told not to
        if not stream:
            whole = line(0, "".join(answer), THINKING_TEXT if thoughts else None,
                         tool_calls if plan.tools else None, final)
            self._json(200, whole, content_type="application/json; charset=utf-8")
            return
        lines = [line(i, thinking=w) for i, w in enumerate(thoughts)]
        if plan.tools:
            lines.append(line(len(lines), tools=tool_calls))
        lines.extend([line(len(lines) + i, w) for i, w in enumerate(answer)])
        events = [(json.dumps(obj).encode() + b"\n", True) for obj in lines]
        events.append((json.dumps(line(len(lines), done=final)).encode() + b"\n", False))
        self._start_stream("application/x-ndjson", {})
        self._play(plan, events, json.dumps({"error": STREAM_ERROR_MESSAGE}).encode() + b"\n")

    def _ollama_embed(self, doc: dict[str, Any], legacy: bool) -> None:
        plan = behaviour(str(doc.get("model") or ""))
        if self._ollama_error(plan):
            return
        if legacy:  # /api/embeddings: one prompt, one vector, no counts
            self._json(200, {"embedding": embedding(0)}, content_type="application/json; charset=utf-8")
            return
        inputs = doc.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        self._json(200, {"model": plan.served, "embeddings": [embedding(i) for i in range(len(items))],
                         "total_duration": 14_000_000, "load_duration": 1_000_000,
                         "prompt_eval_count": words(items)},
                   content_type="application/json; charset=utf-8")
