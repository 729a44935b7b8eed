"""The span: one definition of every field LLMFlow stores.

A span is what LLMFlow records for one unit of work: a proxied LLM call, or a span an app sent
over OTLP. Its document form (``Span.to_document``) is the shape from the product brief, and it
is the only shape that the stores, the API and the exports use.

Times are timezone-aware UTC datetimes truncated to whole milliseconds: MongoDB keeps
milliseconds, so truncating here makes every store give back exactly what it was given (and
keeps cursor paging exact). ``duration`` is computed from the precise times before truncation.
"""

from __future__ import annotations

import enum
import os
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Mapping

TRACE_ID_RE = re.compile(r"^[0-9a-f]{32}$")
SPAN_ID_RE = re.compile(r"^[0-9a-f]{16}$")


class SpanStatus(str, enum.Enum):
    SUCCESS = "success"
    ERROR = "error"
    CANCELLED = "cancelled"


class SpanSource(str, enum.Enum):
    PROXY = "proxy"  # recorded by the mitmproxy addon
    OTLP = "otlp"  # received from an instrumented app


# The keys of ``Span.attributes``, with what each one means. Stores index some of them, the
# dashboard shows them, the OTLP export maps them; this table is the one place they are named.
ATTRIBUTES: dict[str, str] = {
    "provider": "LLM provider the call went to (openai, anthropic, gemini, ollama, groq, ...)",
    "model": "model that answered (the response's model, else the requested one)",
    "request_model": "model the caller asked for",
    "response_model": "model the provider reported",
    "endpoint": "kind of call: chat, completions, responses, embeddings, messages, generate_content, generate, http",
    "temperature": "sampling temperature requested",
    "max_tokens": "output token limit requested (any of the providers' names for it)",
    "top_p": "nucleus sampling parameter requested",
    "stream": "true when the response was streamed",
    "prompt_tokens": "input tokens as the provider counts them",
    "completion_tokens": "output tokens as the provider counts them",
    "total_tokens": "prompt + completion tokens",
    "cached_tokens": "input tokens served from the provider's prompt cache",
    "cache_creation_tokens": "input tokens written to the provider's prompt cache",
    "reasoning_tokens": "reasoning/thinking tokens, when the provider reports them",
    "usage_estimated": "true when tokens were counted by LLMFlow, not reported by the provider",
    "estimated_cost": "USD cost from genai-prices; null when the model's price is unknown",
    "cost_known": "false when no price was found for the model",
    "ttft_ms": "time from the request to the first streamed token, in milliseconds",
    "tokens_per_second": "completion tokens per second of generation (streams)",
    "finish_reason": "normalised finish reason: stop, length, tool_calls, content_filter, error",
    "finish_reason_raw": "the provider's own finish reason",
    "http_status": "HTTP status the client received",
    "request_id": "the provider's request id header",
    "user_id": "end user, from X-Trace-User-Id",
    "session_id": "conversation/session, from X-Trace-Session-Id",
    "feature": "product feature, from X-Trace-Feature",
    "step": "workflow step name, from X-Trace-Step",
    "truncated": "true when a stored body was cut at MAX_RESPONSE_SIZE",
    "custom": "other X-Trace-<Name> headers, as {name: value}",
    "otel": "a span received over OTLP: its original attributes, as sent",
    "duplicate_of": "this record is a second view of the call recorded as that span id (an SDK "
                    "span and the proxy's span of the same call); totals count the call once",
    "client_closed_early": "the client hung up right after the complete answer (not cancelled)",
    "payload_pruned": "prompts and responses were dropped by RETENTION_PAYLOAD_DAYS",
}


def new_trace_id() -> str:
    return os.urandom(16).hex()


def new_span_id() -> str:
    return os.urandom(8).hex()


def utc_ms(moment: datetime) -> datetime:
    """The same instant as an aware UTC datetime with whole milliseconds."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    else:
        moment = moment.astimezone(timezone.utc)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def from_timestamp(seconds: float) -> datetime:
    return utc_ms(datetime.fromtimestamp(seconds, tz=timezone.utc))


def parse_time(value: Any) -> datetime:
    """A datetime from a store or a JSON document (ISO string, aware or naive datetime)."""
    if isinstance(value, datetime):
        return utc_ms(value)
    if isinstance(value, str):
        return utc_ms(datetime.fromisoformat(value.replace("Z", "+00:00")))
    raise TypeError(f"not a time: {value!r}")


def iso(moment: datetime) -> str:
    return utc_ms(moment).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, kw_only=True)
class Span:
    trace_id: str
    span_id: str
    start_time: datetime
    end_time: datetime
    duration: float  # milliseconds
    status: SpanStatus
    operation: str
    parent_span_id: str | None = None
    service: str = "llmflow-proxy"
    source: SpanSource = SpanSource.PROXY
    kind: str = "llm"  # llm | http | workflow | task | agent | tool | internal
    attributes: Mapping[str, Any] = field(default_factory=dict)
    request: Mapping[str, Any] = field(default_factory=dict)
    response: Mapping[str, Any] = field(default_factory=dict)
    error: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not TRACE_ID_RE.match(self.trace_id):
            raise ValueError(f"trace id must be 32 lowercase hex digits: {self.trace_id!r}")
        if not SPAN_ID_RE.match(self.span_id):
            raise ValueError(f"span id must be 16 lowercase hex digits: {self.span_id!r}")
        if self.parent_span_id is not None and not SPAN_ID_RE.match(self.parent_span_id):
            raise ValueError(f"parent span id must be 16 lowercase hex digits: {self.parent_span_id!r}")
        object.__setattr__(self, "start_time", utc_ms(self.start_time))
        object.__setattr__(self, "end_time", utc_ms(self.end_time))
        object.__setattr__(self, "status", SpanStatus(self.status))
        object.__setattr__(self, "source", SpanSource(self.source))

    def with_changes(self, **changes: Any) -> "Span":
        return replace(self, **changes)

    def to_document(self) -> dict[str, Any]:
        """The stored form: the brief's field names, real datetimes."""
        return {
            "traceId": self.trace_id,
            "spanId": self.span_id,
            "parentSpanId": self.parent_span_id,
            "service": self.service,
            "operation": self.operation,
            "kind": self.kind,
            "source": self.source.value,
            "startTime": self.start_time,
            "endTime": self.end_time,
            "duration": self.duration,
            "status": self.status.value,
            "attributes": dict(self.attributes),
            "request": dict(self.request),
            "response": dict(self.response),
            "error": dict(self.error) if self.error is not None else None,
        }

    def to_json(self) -> dict[str, Any]:
        """The document with ISO-8601 times, for the JSON API and exports."""
        doc = self.to_document()
        doc["startTime"] = iso(self.start_time)
        doc["endTime"] = iso(self.end_time)
        return doc

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> "Span":
        return cls(
            trace_id=doc["traceId"],
            span_id=doc["spanId"],
            parent_span_id=doc.get("parentSpanId"),
            service=doc.get("service") or "unknown",
            operation=doc.get("operation") or "",
            kind=doc.get("kind") or "llm",
            source=doc.get("source") or SpanSource.PROXY.value,
            start_time=parse_time(doc["startTime"]),
            end_time=parse_time(doc["endTime"]),
            duration=float(doc.get("duration") or 0.0),
            status=doc.get("status") or SpanStatus.SUCCESS.value,
            attributes=doc.get("attributes") or {},
            request=doc.get("request") or {},
            response=doc.get("response") or {},
            error=doc.get("error"),
        )
