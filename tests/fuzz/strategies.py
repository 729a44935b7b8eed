"""Inputs for the fuzz suite: realistic seeds in every provider's wire shape, and the ways they
get broken (truncated, bytes flipped, NULs, torn UTF-8, wrong JSON types, deep nesting, huge
strings), plus plain random bytes.

Seeds are built here from small dicts shaped like what each provider sends (the same shapes
``tests/support/mock_upstream.py`` serves), so a mutation starts from something a parser
actually reads deep into, not from noise it rejects at the first byte.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from hypothesis import strategies as st

# -- endpoints ------------------------------------------------------------------------------------
GEMINI = "/v1beta/models/gemini-2.0-flash"
ENDPOINTS: dict[str, list[str]] = {
    "openai": ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses",
               "/v1/models", "/openai/v1/chat/completions?api-version=2024-10-21"],
    "anthropic": ["/v1/messages", "/v1/messages?beta=true", "/v1/messages/count_tokens",
                  "/v1/chat/completions"],
    "gemini": [f"{GEMINI}:generateContent", f"{GEMINI}:streamGenerateContent?alt=sse",
               f"{GEMINI}:streamGenerateContent", f"{GEMINI}:embedContent",
               f"{GEMINI}:batchEmbedContents", f"{GEMINI}:countTokens",
               "/v1beta/tunedModels/my-model:generateContent",
               "/v1/projects/p/locations/us/publishers/google/models/gemini-pro:generateContent",
               "/v1beta/openai/chat/completions"],
    "ollama": ["/api/chat", "/api/generate", "/api/embed", "/api/embeddings", "/api/tags",
               "/v1/chat/completions"],
    "groq": ["/openai/v1/chat/completions", "/openai/v1/responses"],
}
ROUTES = list(ENDPOINTS)


def sse(*payloads: Any, events: list[str] | None = None, done: bool = False) -> bytes:
    out = []
    for index, payload in enumerate(payloads):
        name = f"event: {events[index]}\n" if events else ""
        out.append(f"{name}data: {json.dumps(payload)}\n\n")
    if done:
        out.append("data: [DONE]\n\n")
    return "".join(out).encode()


def ndjson(*docs: Any) -> bytes:
    return b"".join(json.dumps(doc).encode() + b"\n" for doc in docs)


TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17,
         "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}

# -- requests (dicts) ---------------------------------------------------------------------------
REQUESTS: dict[str, list[dict[str, Any]]] = {
    "openai": [
        {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "Be brief."},
                                               {"role": "user", "content": "Tell me a joke"}],
         "temperature": 0.2, "max_tokens": 50, "stream": True, "stream_options": {"include_usage": True},
         "tools": [TOOL], "tool_choice": "auto"},
        {"model": "gpt-4o-mini", "prompt": "Say hi", "max_tokens": 5},
        {"model": "text-embedding-3-small", "input": ["hello", "world"], "encoding_format": "float"},
        {"model": "o4-mini", "instructions": "Be brief.", "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]}],
         "reasoning": {"effort": "low"}, "stream": True},
    ],
    "anthropic": [
        {"model": "claude-3-5-haiku-latest", "max_tokens": 100, "system": "Be brief.",
         "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
         "stream": True, "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
         "thinking": {"type": "enabled", "budget_tokens": 1024}},
    ],
    "gemini": [
        {"contents": [{"role": "user", "parts": [{"text": "Hi"}, {"inlineData": {"mimeType": "image/png", "data": "iVBORw0K"}}]}],
         "systemInstruction": {"parts": [{"text": "Be brief."}]},
         "generationConfig": {"temperature": 0.3, "maxOutputTokens": 64, "thinkingConfig": {"thinkingBudget": 0}},
         "tools": [{"functionDeclarations": [{"name": "get_weather"}]}]},
        {"requests": [{"model": "models/text-embedding-004", "content": {"parts": [{"text": "hello"}]},
                       "outputDimensionality": 8}]},
    ],
    "ollama": [
        {"model": "llama3.2", "messages": [{"role": "user", "content": "Hi", "images": ["iVBORw0K"]}],
         "options": {"temperature": 0.1, "num_predict": 20}, "stream": True, "think": True,
         "tools": [TOOL], "format": "json"},
        {"model": "llama3.2", "prompt": "Hi", "system": "Be brief.", "stream": False, "images": ["aGk="]},
        {"model": "nomic-embed-text", "input": ["hello"], "truncate": True},
    ],
}
REQUESTS["groq"] = REQUESTS["openai"]


# -- responses (bytes) --------------------------------------------------------------------------
def _openai_responses() -> list[bytes]:
    chat = {"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!",
                                                 "tool_calls": [{"id": "call_1", "type": "function", "function": {
                                                     "name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                         "finish_reason": "tool_calls"}], "usage": USAGE}
    chunk = {"id": "c", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
             "choices": [{"index": 0, "delta": {"content": "Hel", "reasoning_content": "hmm",
                                                "tool_calls": [{"index": 0, "id": "call_1", "function": {
                                                    "name": "get_weather", "arguments": "{\"ci"}}]},
                          "finish_reason": None}]}
    last = {"id": "c", "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": USAGE}
    responses_doc = {"id": "resp_1", "object": "response", "status": "completed", "model": "o4-mini",
                     "output": [{"type": "reasoning", "summary": [{"type": "summary_text", "text": "think"}]},
                                {"type": "message", "content": [{"type": "output_text", "text": "Hi"}]},
                                {"type": "function_call", "call_id": "fc_1", "name": "f", "arguments": "{}"}],
                     "usage": {"input_tokens": 9, "output_tokens": 3, "total_tokens": 12,
                               "output_tokens_details": {"reasoning_tokens": 1}},
                     "incomplete_details": None}
    embeddings = {"object": "list", "model": "text-embedding-3-small", "usage": {"prompt_tokens": 2, "total_tokens": 2},
                  "data": [{"object": "embedding", "index": 0, "embedding": [0.1, -0.2, 0.3]},
                           {"object": "embedding", "index": 1, "embedding": "AACAPwAAAEA="}]}
    error = {"error": {"message": "Rate limit reached", "type": "rate_limit_error", "code": "rate_limit", "param": None}}
    return [
        json.dumps(chat).encode(),
        sse(chunk, chunk, last, done=True),
        json.dumps({"id": "cmpl", "model": "gpt-4o-mini", "choices": [{"index": 0, "text": "hi", "finish_reason": "length"}],
                    "usage": USAGE}).encode(),
        sse({"choices": [{"index": 0, "text": "hi"}]}, {"choices": [{"index": 1, "text": "yo", "finish_reason": "stop"}]}),
        json.dumps(embeddings).encode(),
        json.dumps(responses_doc).encode(),
        sse({"type": "response.created", "response": {"model": "o4-mini"}},
            {"type": "response.output_text.delta", "delta": "Hi"},
            {"type": "response.function_call_arguments.delta", "delta": "{}"},
            {"type": "error", "error": {"type": "server_error", "message": "boom"}},
            {"type": "response.completed", "response": responses_doc},
            events=["response.created", "response.output_text.delta",
                    "response.function_call_arguments.delta", "error", "response.completed"]),
        json.dumps(error).encode(),
        sse(chunk, {"error": {"message": "mid-stream failure", "type": "server_error"}}),
    ]


def _anthropic_responses() -> list[bytes]:
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-20241022",
               "content": [{"type": "thinking", "thinking": "hmm", "signature": "x"},
                           {"type": "text", "text": "Hello"},
                           {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}],
               "stop_reason": "tool_use",
               "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 2,
                         "cache_creation_input_tokens": 1}}
    events = [
        ("message_start", {"type": "message_start", "message": {**message, "content": [], "stop_reason": None,
                                                                "usage": {"input_tokens": 10, "output_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "thinking", "thinking": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "thinking_delta", "thinking": "hmm"}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "signature_delta", "signature": "x"}}),
        ("content_block_start", {"type": "content_block_start", "index": 1,
                                 "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 1,
                                 "delta": {"type": "text_delta", "text": "Hel"}}),
        ("content_block_start", {"type": "content_block_start", "index": 2,
                                 "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 2,
                                 "delta": {"type": "input_json_delta", "partial_json": "{\"city\": \"Pa"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 2}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                           "usage": {"output_tokens": 15}}),
        ("ping", {"type": "ping"}),
        ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    error = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}, "request_id": "req_1"}
    return [json.dumps(message).encode(),
            sse(*[e[1] for e in events], events=[e[0] for e in events]),
            json.dumps(error).encode()]


def _gemini_responses() -> list[bytes]:
    chunk = {"candidates": [{"content": {"role": "model", "parts": [
        {"text": "thinking...", "thought": True}, {"text": "Hello"},
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
        "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 10,
                          "thoughtsTokenCount": 2, "cachedContentTokenCount": 1},
        "modelVersion": "gemini-2.0-flash-001", "promptFeedback": {"blockReason": "SAFETY"}}
    error = {"error": {"code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED"}}
    return [json.dumps(chunk).encode(),
            sse(chunk, chunk),
            json.dumps([chunk, chunk]).encode(),
            json.dumps([error]).encode(),
            json.dumps({"embedding": {"values": [0.1, 0.2]}}).encode(),
            json.dumps({"embeddings": [{"values": [0.1, 0.2]}, {"values": [0.3, 0.4]}]}).encode(),
            json.dumps(error).encode()]


def _ollama_responses() -> list[bytes]:
    chunk = {"model": "llama3.2", "created_at": "2026-01-01T00:00:00Z",
             "message": {"role": "assistant", "content": "Hel", "thinking": "hmm",
                         "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
             "done": False}
    final = {"model": "llama3.2", "message": {"role": "assistant", "content": ""}, "done": True,
             "done_reason": "stop", "prompt_eval_count": 10, "eval_count": 5, "total_duration": 123}
    generate = {"model": "llama3.2", "response": "Hi", "done": True, "done_reason": "length",
                "context": [1, 2, 3], "prompt_eval_count": 3, "eval_count": 1}
    return [ndjson(chunk, chunk, final),
            json.dumps(final).encode(),
            ndjson({"model": "llama3.2", "response": "H", "done": False}, generate),
            json.dumps(generate, indent=2).encode(),
            json.dumps({"model": "nomic-embed-text", "embeddings": [[0.1, 0.2]], "prompt_eval_count": 1}).encode(),
            json.dumps({"embedding": [0.1, 0.2, 0.3]}).encode(),
            json.dumps({"error": "model 'x' not found"}).encode(),
            ndjson(chunk, {"error": "unexpected EOF"})]


RESPONSES: dict[str, list[bytes]] = {
    "openai": _openai_responses(), "anthropic": _anthropic_responses(),
    "gemini": _gemini_responses(), "ollama": _ollama_responses(),
}
RESPONSES["groq"] = RESPONSES["openai"]
ALL_RESPONSES = [body for bodies in RESPONSES.values() for body in bodies]

# -- the nastiest fixed inputs (also kept in the corpus) ------------------------------------------
DEEP = 10_000
NASTY: dict[str, bytes] = {
    "deep-array": b"[" * DEEP + b"]" * DEEP,
    "deep-array-open": b"[" * DEEP,
    "deep-object": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "deep-in-sse": b"data: " + b"[" * DEEP + b"]" * DEEP + b"\n\n",
    "deep-in-ndjson": b'{"message":' * DEEP + b"{}" + b"}" * DEEP + b"\n{}\n",
    "nuls": b'{"model":"gpt\x00","choices":[{"message":{"content":"a\x00b"}}]}\x00\x00',
    "torn-utf8": b'{"choices":[{"message":{"content":"caf\xc3"}}],"model":"\xe2\x82"}',
    "lone-surrogates": b'{"model":"\\ud800","choices":[{"message":{"content":"\\udfff x"}}]}',
    "nan-infinity": b'{"temperature":NaN,"top_p":Infinity,"usage":{"prompt_tokens":-Infinity,"completion_tokens":1e999}}',
    "huge-ints": b'{"usage":{"prompt_tokens":123456789012345678901234567890,"completion_tokens":9223372036854775808}}',
    "bom": b"\xef\xbb\xbf" + json.dumps({"model": "gpt-4o-mini"}).encode(),
    "utf16": json.dumps({"model": "gpt-4o-mini"}).encode("utf-16"),
    "only-crlf": b"\r\n" * 1000,
    "sse-no-newline": b"data: {\"choices\": [{\"delta\": {\"content\": \"x\"}}]}",
    "bare-cr-lines": b"data: {}\r\rdata: {\"model\": 1}\r\r",
}


# -- generic JSON values (any type in any place) ---------------------------------------------------
# Any code point, lone surrogates (what mitmproxy makes of non-UTF-8 header bytes) included.
ANY_CHAR = st.one_of(st.characters(), st.characters(categories=["Cs"]))
WIRE_TEXT = st.one_of(st.text(max_size=30), st.text(ANY_CHAR, max_size=10))


def _text() -> st.SearchStrategy[str]:
    # NULs and surrogates included (json.dumps escapes them as \\udXXX).
    return st.one_of(st.text(max_size=20), st.text(ANY_CHAR, max_size=8),
                     st.sampled_from(["", "\x00", "\ud800", "\udfff x", "²", "१२", "NaN", "null",
                                      "stop", "tool_use", "STOP", "[DONE]", "models/", "data:", "\n\n",
                                      "sk-" + "a" * 24, "Bearer abcdefghijkl"]))


SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 2**31, 2**63 - 1, 2**63, -(2**63) - 1, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    _text(),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(_text(), children, max_size=4)),
    max_leaves=12,
)


def dumps(value: Any) -> bytes:
    """JSON the way a broken upstream might write it: NaN/Infinity allowed, escapes for anything
    (lone surrogates become \\udXXX escapes)."""
    return json.dumps(value, allow_nan=True).encode()


@st.composite
def wrong_types(draw: st.DrawFn, seed: Any, depth: int = 0) -> Any:
    """``seed`` with values here and there replaced by values of another type, keys dropped or
    added (recursively)."""
    if depth < 8 and draw(st.integers(0, 9)) == 0:
        return draw(JSON_VALUES)
    if isinstance(seed, dict):
        out = {}
        for key, value in seed.items():
            if draw(st.integers(0, 19)) == 0:
                continue
            out[key] = draw(wrong_types(value, depth + 1))
        if draw(st.integers(0, 9)) == 0:
            out[draw(_text())] = draw(JSON_VALUES)
        return out
    if isinstance(seed, list):
        return [draw(wrong_types(item, depth + 1)) for item in seed]
    return seed


# -- byte-level mutations --------------------------------------------------------------------------
TORN = [b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"\xed\xa0\x80", b"\xff\xfe", b"\x80", b"\xc0\xaf"]
SPLICES = [b"\x00", b"\n", b"\n\n", b"\r\n", b"data: ", b"event: error\n", b"data: [DONE]\n\n",
           b"{", b"}", b"[", b"]", b"\"", b",", b":", b"\\", b"\\u", b"\\ud800", b"NaN", b"1e999",
           b"99999999999999999999999", b"null", b"true", *TORN]


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` after 1-4 random edits: truncation, flipped/inserted/deleted bytes, NULs, torn
    UTF-8, structural characters, duplicated or dropped segments."""
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        size = len(data)
        at = draw(st.integers(0, size))
        op = draw(st.sampled_from(["truncate", "flip", "insert", "splice", "delete", "duplicate",
                                   "nul-run", "head-cut"]))
        if op == "truncate":
            del data[at:]
        elif op == "head-cut":
            del data[:at]
        elif op == "flip" and size:
            index = min(at, size - 1)
            data[index] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "splice":
            data[at:at] = draw(st.sampled_from(SPLICES))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 16))]
        elif op == "duplicate":
            end = draw(st.integers(at, min(size, at + 256)))
            data[at:at] = data[at:end]
        elif op == "nul-run":
            data[at:at] = b"\x00" * draw(st.integers(1, 64))
    return bytes(data)


@st.composite
def with_huge_string(draw: st.DrawFn, doc: Any, max_size: int = 1 << 20) -> bytes:
    """``doc`` serialised with one string value (or key) made huge: up to ``max_size`` chars."""
    size = draw(st.integers(1 << 10, max_size))
    char = draw(st.sampled_from(["x", "é", "€", "😀", "\\n", "\\u0000"]))
    marker = "\u2063HUGE\u2063"
    placed = _place(doc, marker, draw)
    text = json.dumps(placed, ensure_ascii=False)
    return text.replace(marker, char * (size // len(char.encode()) or 1), 1).encode()


@st.composite
def with_deep_nesting(draw: st.DrawFn, doc: Any) -> bytes:
    """``doc`` with one value replaced by ``[[[[...]]]]`` / ``{"a":{"a":...}}`` thousands deep
    (closed or left open)."""
    depth = draw(st.sampled_from([70, 100, 500, 900, 950, 990, 1000, 5000, DEEP, 50_000]))
    opening, closing = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
    inner = b"1" if opening.startswith(b"{") else b""
    deep = opening * depth + inner + (closing * depth if draw(st.booleans()) else b"")
    marker = "\u2063DEEP\u2063"
    text = json.dumps(_place(doc, marker, draw)).encode()
    return text.replace(json.dumps(marker).encode(), deep, 1)


def _place(doc: Any, marker: str, draw: st.DrawFn) -> Any:
    """A copy of ``doc`` with a randomly chosen value replaced by ``marker``."""
    if isinstance(doc, dict) and doc and draw(st.integers(0, 3)):
        key = draw(st.sampled_from(sorted(doc)))
        return {**doc, key: _place(doc[key], marker, draw)}
    if isinstance(doc, list) and doc and draw(st.integers(0, 3)):
        index = draw(st.integers(0, len(doc) - 1))
        return [*doc[:index], _place(doc[index], marker, draw), *doc[index + 1:]]
    return marker


def _sse_docs(body: bytes) -> list[Any] | None:
    """The JSON payloads of an SSE seed (to re-emit with wrong types), else None."""
    if not body.startswith((b"data:", b"event:")):
        return None
    docs = []
    for line in body.splitlines():
        if line.startswith(b"data: ") and line != b"data: [DONE]":
            docs.append(json.loads(line[6:]))
    return docs


@st.composite
def response_bodies(draw: st.DrawFn, route: str | None = None) -> bytes:
    """A response body for ``route`` (any route when None): a seed, broken in one of many ways."""
    seeds = RESPONSES[route] if route else ALL_RESPONSES
    seed = draw(st.sampled_from(seeds))
    kind = draw(st.sampled_from(["seed", "mutated", "wrong-types", "wrong-types", "mutated-wrong",
                                 "random", "nasty", "huge", "deep", "stream-lines"]))
    if kind == "seed":
        return seed
    if kind == "mutated":
        return draw(mutated(seed))
    if kind in ("wrong-types", "mutated-wrong"):
        docs = _sse_docs(seed)
        if docs is not None:
            body = sse(*[draw(wrong_types(doc)) for doc in docs], done=draw(st.booleans()))
        elif seed.lstrip().startswith((b"{", b"[")) and b"\n{" not in seed:
            body = dumps(draw(wrong_types(json.loads(seed))))
        else:  # NDJSON
            body = b"".join(dumps(draw(wrong_types(json.loads(line)))) + b"\n" for line in seed.splitlines())
        return draw(mutated(body)) if kind == "mutated-wrong" else body
    if kind == "random":
        return draw(st.one_of(st.binary(max_size=512), st.text(max_size=200).map(
            lambda t: t.encode("utf-8", "surrogatepass"))))
    if kind == "nasty":
        return draw(st.sampled_from(list(NASTY.values())))
    if kind == "huge":
        docs = _sse_docs(seed)
        if docs is not None:
            return b"data: " + draw(with_huge_string(docs[0], 1 << 19)) + b"\n\n" + seed
        if b"\n{" in seed:
            return draw(with_huge_string(json.loads(seed.splitlines()[0]), 1 << 19)) + b"\n" + seed
        return draw(with_huge_string(json.loads(seed), 1 << 19))
    if kind == "deep":
        docs = _sse_docs(seed)
        if docs is not None:
            return seed + b"data: " + draw(with_deep_nesting(docs[0])) + b"\n\n"
        if b"\n{" in seed:
            return seed + draw(with_deep_nesting(json.loads(seed.splitlines()[0]))) + b"\n"
        return draw(with_deep_nesting(json.loads(seed)))
    # stream-lines: SSE/NDJSON framing around arbitrary lines
    lines = draw(st.lists(st.one_of(st.sampled_from(SPLICES), st.binary(max_size=40),
                                    st.builds(lambda v: b"data: " + dumps(v), JSON_VALUES),
                                    st.builds(lambda v: dumps(v), JSON_VALUES)), max_size=12))
    return draw(st.sampled_from([b"\n", b"\n\n", b"\r\n"])).join(lines)


@st.composite
def request_docs(draw: st.DrawFn, route: str | None = None) -> Any:
    """A parsed request body (what capture hands the parser: JSON data or None)."""
    seeds = REQUESTS[route] if route else [d for docs in REQUESTS.values() for d in docs]
    seed = draw(st.sampled_from(seeds))
    kind = draw(st.sampled_from(["seed", "wrong-types", "wrong-types", "any", "none"]))
    if kind == "seed":
        return seed
    if kind == "wrong-types":
        return draw(wrong_types(seed))
    if kind == "any":
        return draw(JSON_VALUES)
    return None


@st.composite
def request_bodies(draw: st.DrawFn, route: str | None = None) -> bytes:
    """Request body bytes (what the client sent): a seed, broken like the responses are."""
    seeds = REQUESTS[route] if route else [d for docs in REQUESTS.values() for d in docs]
    seed = draw(st.sampled_from(seeds))
    kind = draw(st.sampled_from(["seed", "wrong-types", "mutated", "random", "nasty", "huge",
                                 "deep", "empty"]))
    if kind == "seed":
        return json.dumps(seed).encode()
    if kind == "wrong-types":
        return dumps(draw(wrong_types(seed)))
    if kind == "mutated":
        return draw(mutated(json.dumps(seed).encode()))
    if kind == "random":
        return draw(st.binary(max_size=512))
    if kind == "nasty":
        return draw(st.sampled_from(list(NASTY.values())))
    if kind == "huge":
        return draw(with_huge_string(seed, 1 << 19))
    if kind == "deep":
        return draw(with_deep_nesting(seed))
    return b""


def one_of_routes(builder: Callable[[str], st.SearchStrategy]) -> st.SearchStrategy:
    return st.sampled_from(ROUTES).flatmap(builder)
