"""Streaming exports of a filtered span list: CSV (one row per span) and JSON Lines (one span
document per line). Spans are read one at a time from the store, so 100,000 of them never sit in
memory together."""

from __future__ import annotations

import csv
import io
import json
from typing import Iterable, Iterator

from llmflow_core.spans import Span, iso

CSV_COLUMNS = (
    "startTime", "traceId", "spanId", "parentSpanId", "service", "operation", "kind", "status",
    "provider", "model", "request_model", "prompt_tokens", "completion_tokens", "total_tokens",
    "cached_tokens", "reasoning_tokens", "estimated_cost", "duration_ms", "ttft_ms", "http_status",
    "finish_reason", "user_id", "session_id", "feature", "error_type", "error_message",
)


def csv_row(span: Span) -> list[object]:
    attrs = span.attributes
    error = span.error or {}
    return [
        iso(span.start_time), span.trace_id, span.span_id, span.parent_span_id or "", span.service,
        span.operation, span.kind, span.status.value, attrs.get("provider", ""),
        attrs.get("model", ""), attrs.get("request_model", ""), attrs.get("prompt_tokens", ""),
        attrs.get("completion_tokens", ""), attrs.get("total_tokens", ""),
        attrs.get("cached_tokens", ""), attrs.get("reasoning_tokens", ""),
        "" if attrs.get("estimated_cost") is None else attrs["estimated_cost"], span.duration,
        attrs.get("ttft_ms", ""), attrs.get("http_status", ""), attrs.get("finish_reason", ""),
        attrs.get("user_id", ""), attrs.get("session_id", ""), attrs.get("feature", ""),
        error.get("type", ""), error.get("message", ""),
    ]


def _safe_cell(value: object) -> object:
    """Spreadsheets run cells starting with = + - @ as formulas: prompts are untrusted."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def csv_lines(spans: Iterable[Span]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    yield buffer.getvalue()
    for span in spans:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([_safe_cell(value) for value in csv_row(span)])
        yield buffer.getvalue()


def jsonl_lines(spans: Iterable[Span]) -> Iterator[str]:
    for span in spans:
        yield json.dumps(span.to_json(), ensure_ascii=False, default=str) + "\n"
