"""Spans for tests, with every field a real proxied call would have."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from llmflow_core.spans import Span, SpanStatus, new_span_id, new_trace_id

T0 = datetime(2026, 11, 20, 12, 0, 0, tzinfo=timezone.utc)


def make_span(*, start: datetime = T0, duration_ms: float = 250.0, status: str = "success",
              model: str = "gpt-4o-mini", provider: str = "openai", prompt: str = "Hello there",
              answer: str = "General Kenobi", prompt_tokens: int | None = 12,
              completion_tokens: int | None = 5, cost: float | None = 0.00001,
              trace_id: str | None = None, parent: str | None = None, service: str = "llmflow-proxy",
              **attributes: Any) -> Span:
    total = None if prompt_tokens is None or completion_tokens is None else prompt_tokens + completion_tokens
    attrs = {"provider": provider, "model": model, "request_model": model,
             "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
             "total_tokens": total, "estimated_cost": cost, "http_status": 200 if status == "success" else 500}
    attrs.update(attributes)
    return Span(
        trace_id=trace_id or new_trace_id(), span_id=new_span_id(), parent_span_id=parent,
        service=service, operation="chat.completions.create",
        start_time=start, end_time=start + timedelta(milliseconds=duration_ms),
        duration=duration_ms, status=SpanStatus(status),
        attributes=attrs,
        request={"method": "POST", "url": "https://api.openai.com/v1/chat/completions",
                 "messages": [{"role": "user", "content": prompt}], "parameters": {"temperature": 0.2}},
        response={"status_code": 200, "output": {"text": answer}},
        error={"type": "server_error", "message": "boom"} if status == "error" else None,
    )
