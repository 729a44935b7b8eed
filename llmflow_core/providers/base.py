"""What a provider parser produces, and the wire helpers they share.

A parser turns a request body and a response body (whole JSON, or SSE / NDJSON stream text)
into a ``ParsedCall``. Parsers never raise on bad input: whatever cannot be read is left empty
and the span is still recorded with the raw bytes (capped).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterator


@dataclass
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cached_tokens: int | None = None
    cache_creation_tokens: int | None = None
    reasoning_tokens: int | None = None
    estimated: bool = False

    def complete(self) -> "Usage":
        if self.total_tokens is None and self.prompt_tokens is not None and self.completion_tokens is not None:
            self.total_tokens = self.prompt_tokens + self.completion_tokens
        return self

    def attributes(self) -> dict[str, Any]:
        """The span attributes this usage fills (spans.ATTRIBUTES); detail counts only if known."""
        out: dict[str, Any] = {"prompt_tokens": self.prompt_tokens,
                               "completion_tokens": self.completion_tokens,
                               "total_tokens": self.total_tokens, "usage_estimated": self.estimated}
        for key in ("cached_tokens", "cache_creation_tokens", "reasoning_tokens"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    @property
    def known(self) -> bool:
        return self.prompt_tokens is not None or self.completion_tokens is not None


@dataclass
class ParsedCall:
    endpoint: str = "http"  # chat, completions, responses, embeddings, messages, generate, http
    operation: str = "http.request"
    request_model: str | None = None
    response_model: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] | None = None  # input as [{role, content, ...}]
    output: dict[str, Any] = field(default_factory=dict)  # {text, tool_calls, reasoning, choices}
    finish_reason: str | None = None
    finish_reason_raw: str | None = None
    usage: Usage = field(default_factory=Usage)
    error: dict[str, Any] | None = None
    stream: bool = False
    first_token_offset: int | None = None  # byte offset in the stream of the first output token
    response_body: Any = None  # parsed response document to store (non-streamed)
    events: int = 0  # stream events seen


def loads(data: bytes | str) -> Any:
    """JSON or None; never raises."""
    try:
        return json.loads(data)
    except (ValueError, TypeError, RecursionError):
        return None


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def as_int(value: Any) -> int | None:
    """An integer count, or None. Beyond signed 64 bits (no real count is) it is None too: the
    stores cannot hold it (SQLite INTEGER columns, BSON), and one such span would fail the whole
    batch it is written in (found by tests/fuzz)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        value = int(value) if value.is_integer() else None  # inf and nan are not integers
    if isinstance(value, int) and INT64_MIN <= value <= INT64_MAX:
        return value
    return None


def as_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(slots=True)
class SSEEvent:
    event: str | None
    data: str
    offset: int  # byte offset of the event's first line in the stream


_BREAKS = (10, 13)  # "\n", "\r": a line of ``bytes.splitlines(keepends=True)`` starting with one is blank


def iter_sse(body: bytes) -> Iterator[SSEEvent]:
    """Server-sent events from stream bytes: ``event:`` / ``data:`` lines, blank line ends one."""
    event: str | None = None
    data: list[str] = []
    start = 0
    offset = 0
    for raw_line in body.splitlines(keepends=True):
        line_start = offset
        offset += len(raw_line)
        if raw_line[0] in _BREAKS:  # tested before decoding: 5 MB of newlines took 1.6 s (tests/fuzz)
            if data:
                yield SSEEvent(event, "\n".join(data), start)
            event, data = None, []
            continue
        line = raw_line.decode("utf-8", "replace").rstrip("\r\n")
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if not data and event is None:
            start = line_start
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    if data:
        yield SSEEvent(event, "\n".join(data), start)


# NDJSON lines are found by a regex over the bytes, so blank lines cost nothing (a per-line loop
# took ~1 s on 5 MB of newlines; tests/fuzz). Line breaks are those of ``bytes.splitlines``.
_LINE = re.compile(rb"[^\r\n]+")


def iter_ndjson(body: bytes) -> Iterator[tuple[int, Any]]:
    """(offset, parsed object or array) for each JSON line; unreadable lines are skipped."""
    for match in _LINE.finditer(body):
        line = match.group()
        # Only objects and arrays are of use to a parser: other lines are skipped unparsed (a
        # failed json.loads costs ~8 us: 5 MB of "data: {" lines took 5 s; tests/fuzz).
        if line.lstrip()[:1] in (b"{", b"["):
            value = loads(line)
            if value is not None:
                yield match.start(), value


PARAMETER_KEYS = (
    "temperature", "top_p", "top_k", "max_tokens", "max_completion_tokens", "max_output_tokens",
    "n", "stop", "seed", "presence_penalty", "frequency_penalty", "response_format", "tool_choice",
    "user", "logprobs", "top_logprobs", "reasoning_effort", "reasoning", "stream", "stream_options",
    "parallel_tool_calls", "thinking", "stop_sequences", "metadata", "service_tier", "store",
    "instructions", "previous_response_id", "dimensions", "encoding_format", "suffix", "echo",
)


def pick_parameters(body: dict[str, Any]) -> dict[str, Any]:
    params = {key: body[key] for key in PARAMETER_KEYS if key in body}
    tools = body.get("tools")
    if isinstance(tools, list):
        params["tools"] = tools
    return params
