"""Bounded work: one very large, deeply nested or compressed body is handled in bounded time and
memory ("never blocks the event loop", "never exhausts the proxy").

The proxy's hooks only copy bytes (``BodyTee``); parsing runs in the recorder process's writer.
These are sanity bounds, far from benchmarks: 10 s for a 5 MB body (the slowest shape takes ~1 s),
and a decompression bomb must not inflate past the tee's own limits.
"""

from __future__ import annotations

import json
import time
import tracemalloc
import zlib

import pytest

from llmflow_core import providers
from llmflow_core.capture import MAX_INFLATED, CaptureOptions, build_span
from llmflow_core.exchange import DEFAULT_HEAD_LIMIT, TAIL_BYTES, BodyTee, Exchange
from llmflow_core.providers.base import loads
from tests.fuzz import strategies as fz
from tests.fuzz.stats import tally

MB = 1024 * 1024
SIZE = 5 * MB
# A guard against work that grows faster than the body (such bugs took minutes on 5 MB), not a
# speed target: the slowest shape takes ~1 s here, and a loaded CI machine can double that.
BOUND_SECONDS = 10.0


def _huge_document(route: str) -> bytes:
    """The route's first whole-JSON answer with a 5 MB string in it."""
    seed = next(doc for doc in map(loads, fz.RESPONSES[route]) if isinstance(doc, dict))
    return json.dumps({**seed, "id": "x" * (SIZE - len(json.dumps(seed)))}).encode()


def _long_stream(route: str) -> bytes:
    """~5 MB of the route's stream seed repeated: tens of thousands of small events."""
    seed = fz.RESPONSES[route][1]
    return seed * (SIZE // len(seed))


SHAPES = {
    "huge-string": _huge_document,
    "long-stream": _long_stream,
    "deep-open": lambda route: b"[" * SIZE,
    "deep-closed": lambda route: b"[" * (SIZE // 2) + b"]" * (SIZE // 2),
    "deep-objects": lambda route: b'{"a":' * (SIZE // 5),
    "nuls": lambda route: b"\x00" * SIZE,
    "newlines": lambda route: b"\n" * SIZE,
    "data-lines": lambda route: b"data: {\n" * (SIZE // 8),
    "one-json-array": lambda route: b"[" + b"{}," * (SIZE // 3) + b"{}]",
}
ROUTES = ["openai", "anthropic", "gemini", "ollama"]


def timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


# Gemini's 5 MB JSON array of "{}" (its slowest shape) is replayed by the corpus instead
# (build_span-gemini-5mb-json-array-of-empty-objects): not twice per run.
CASES = [(route, shape) for route in ROUTES for shape in sorted(SHAPES)
         if (route, shape) != ("gemini", "one-json-array")]


@pytest.mark.parametrize(("route", "shape"), CASES)
def test_large_body_is_recorded_in_bounded_time(route, shape):
    """A 5 MB response of each shape: recorded (build_span: decode, parse, cap) as a stream,
    and parsed as a whole answer, each within the bound."""
    body = SHAPES[shape](route)
    path = fz.ENDPOINTS[route][0] if route != "gemini" else fz.ENDPOINTS[route][1]
    request = json.dumps(fz.REQUESTS[route][0]).encode()
    seconds = timed(lambda: providers.parse(route, path, loads(request), body, 200, False))
    assert seconds < BOUND_SECONDS, f"{route} {shape}: parsing 5 MB took {seconds:.1f}s"
    exchange = Exchange(route=route, method="POST", url="https://api.example.com" + path, path=path,
                        request_headers=[("content-type", "application/json")], request_body=request,
                        started=1_795_176_000.0, status_code=200,
                        response_headers=[("content-type", "text/event-stream")], response_body=body,
                        response_size=len(body), ended=1_795_176_001.0, streamed=True)
    seconds = timed(lambda: build_span(exchange, CaptureOptions()))
    assert seconds < BOUND_SECONDS, f"{route} {shape}: build_span took {seconds:.1f}s on 5 MB"
    tally("timing: 5 MB bodies (parse + build_span)", 2, 2 * len(body))


def _gzip_bomb(inflated: int) -> bytes:
    deflater = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = b"\x00" * MB
    return b"".join(deflater.compress(zeros) for _ in range(inflated // MB)) + deflater.flush()


def test_decompression_bomb_is_bounded():
    """256 MB of gzip'd zeros (~250 KB on the wire): inflated only as far as the tee would keep
    a plain body (it took 557 MB and 4 s before the fix)."""
    bomb = _gzip_bomb(256 * MB)
    exchange = Exchange(route="openai", method="POST", url="https://api.openai.com/v1/chat/completions",
                        path="/v1/chat/completions", request_headers=[], request_body=b"{}",
                        started=1_795_176_000.0, status_code=200,
                        response_headers=[("content-encoding", "gzip"), ("content-type", "application/json")],
                        response_body=bomb, response_size=len(bomb), ended=1_795_176_001.0)
    tracemalloc.start()
    try:
        seconds = timed(lambda: build_span(exchange))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seconds < BOUND_SECONDS
    assert peak < 4 * DEFAULT_HEAD_LIMIT, f"peak {peak / MB:.0f} MB"
    assert MAX_INFLATED >= DEFAULT_HEAD_LIMIT
    tally("timing: decompression bomb", 1, len(bomb))


def test_stream_usage_survives_a_large_compressed_stream():
    """The bound keeps the tail: a 20 MB gzip'd stream still yields the usage at its end."""
    events = b"".join(b'data: {"choices":[{"delta":{"content":"%d"}}]}\n\n' % i for i in range(400_000))
    events += b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":400000}}\n\ndata: [DONE]\n\n'
    deflater = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    body = deflater.compress(events) + deflater.flush()
    exchange = Exchange(route="openai", method="POST", url="https://api.openai.com/v1/chat/completions",
                        path="/v1/chat/completions", request_headers=[], request_body=b'{"stream": true}',
                        started=1_795_176_000.0, status_code=200,
                        response_headers=[("content-encoding", "gzip"), ("content-type", "text/event-stream")],
                        response_body=body, response_size=len(body), ended=1_795_176_001.0, streamed=True)
    span = build_span(exchange)
    assert span.attributes["completion_tokens"] == 400_000 and span.attributes["truncated"] is True
    tally("timing: decompression bomb", 1, len(body))


def test_tee_on_the_event_loop_is_bounded():
    """What runs on the proxy's event loop per chunk: append and note the time, memory bounded."""
    tee = BodyTee(head_limit=MB)
    chunk = b"x" * 1024
    seconds = timed(lambda: [tee(chunk) for _ in range(20 * 1024)])  # 20 MB in 1 KB chunks
    assert seconds < BOUND_SECONDS
    assert sum(map(len, tee.head)) <= MB + len(chunk) and tee.tail_len <= TAIL_BYTES + len(chunk)
    assert tee.size == 20 * MB
    tally("timing: tee on 20 MB", 1, 20 * MB)


@pytest.mark.parametrize("name", sorted(fz.NASTY))
def test_loads_on_nasty_inputs_is_quick(name):
    body = fz.NASTY[name]
    assert timed(lambda: loads(body)) < BOUND_SECONDS
    tally("timing: nasty seeds through loads", 1, len(body))
