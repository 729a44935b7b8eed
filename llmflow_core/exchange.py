"""The raw record of one proxied HTTP exchange, as the addon hands it over.

The proxy's hooks only copy bytes and timestamps into an ``Exchange`` (cheap, on the event
loop); everything else — parsing, redaction, pricing, building the span — happens later on the
writer's thread (``capture.build_span``). ``BodyTee`` is the streaming callable the addon gives
mitmproxy: it forwards each chunk untouched and keeps what the span needs, bounded in memory.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

# How much of a response the tee keeps for parsing. Past it the tee keeps only the last
# TAIL_BYTES, where streams put their usage, so memory stays bounded on any response.
DEFAULT_HEAD_LIMIT = 8 * 1024 * 1024
TAIL_BYTES = 64 * 1024


@dataclass(slots=True)
class Exchange:
    route: str  # upstream route name (openai, anthropic, ...)
    method: str
    url: str  # the upstream URL the request went to (secrets still in it: redacted later)
    path: str  # the path the client asked for, before routing
    request_headers: list[tuple[str, str]]
    request_body: bytes
    started: float  # epoch seconds, request received
    trace_headers: list[tuple[str, str]] = field(default_factory=list)  # X-Trace-*, traceparent
    status_code: int | None = None
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    response_body: bytes = b""  # wire bytes (maybe compressed); head only when cut
    response_tail: bytes = b""  # last bytes of a body too long to keep whole
    response_size: int = 0  # bytes the upstream sent, kept or not
    chunk_times: list[tuple[int, float]] = field(default_factory=list)  # (offset, epoch seconds)
    response_started: float | None = None  # response headers arrived
    ended: float | None = None
    streamed: bool = False
    error: str | None = None  # transport-level failure (unreachable upstream, reset, ...)
    cancelled: bool = False  # the client went away before the response was complete
    client_status: int | None = None  # what the client got when the proxy answered itself

    @property
    def body_cut(self) -> bool:
        return self.response_size > len(self.response_body)


class BodyTee:
    """mitmproxy ``flow.response.stream`` callable: pass chunks on, keep a bounded copy.

    It runs inside the proxy core for every chunk, so it only appends and notes the time.
    """

    __slots__ = ("head", "tail", "tail_len", "size", "times", "head_limit")

    def __init__(self, head_limit: int = DEFAULT_HEAD_LIMIT) -> None:
        self.head: list[bytes] = []
        self.tail: deque[bytes] = deque()
        self.tail_len = 0
        self.size = 0
        self.times: list[tuple[int, float]] = []
        self.head_limit = head_limit

    def __call__(self, chunk: bytes) -> bytes:
        if chunk:
            self.times.append((self.size, time.time()))
            if self.size < self.head_limit:
                self.head.append(chunk)
            else:
                self.tail.append(chunk)
                self.tail_len += len(chunk)
                while self.tail_len - len(self.tail[0]) >= TAIL_BYTES:
                    self.tail_len -= len(self.tail.popleft())
            self.size += len(chunk)
        return chunk

    def fill(self, exchange: Exchange) -> None:
        exchange.response_body = b"".join(self.head)
        exchange.response_tail = b"".join(self.tail)
        exchange.response_size = self.size
        exchange.chunk_times = self.times
