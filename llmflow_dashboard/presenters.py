"""Spans -> what the pages show: previews, number formats, waterfall geometry.

Plain data only; templates escape everything (LLM text is untrusted input).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

from llmflow_core import otlp
from llmflow_core.spans import Span
from llmflow_core.text import content_text, message_text

PREVIEW_WORDS = 14


def preview(span: Span, words: int = PREVIEW_WORDS) -> str:
    """First words of the last user message (else the operation)."""
    messages = span.request.get("messages") or []
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") in ("user", None, "input"):
                text = " ".join(message_text(message).split())
                if text:
                    cut = text.split(" ")
                    return " ".join(cut[:words]) + (" …" if len(cut) > words else "")
    return span.operation


def fmt_cost(value: Any) -> str:
    if value is None:
        return "?"
    if value == 0:
        return "$0"
    return f"${value:.4f}" if value >= 0.0001 else f"${value:.6f}"


def fmt_ms(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.0f} ms" if value < 10_000 else f"{value / 1000:.1f} s"


@dataclass
class Row:
    span: Span
    preview: str
    tokens_in: Any
    tokens_out: Any
    cost: str
    latency: str
    ttft: str
    estimated: bool


def rows(spans: Iterable[Span]) -> list[Row]:
    out = []
    for span in spans:
        attrs = span.attributes
        out.append(Row(span, preview(span), attrs.get("prompt_tokens"),
                       attrs.get("completion_tokens"), fmt_cost(attrs.get("estimated_cost")),
                       fmt_ms(span.duration), fmt_ms(attrs.get("ttft_ms")),
                       bool(attrs.get("usage_estimated"))))
    return out


@dataclass
class Bar:
    span: Span
    depth: int
    offset_pct: float
    width_pct: float
    ttft_pct: float | None
    label: str
    twin: str | None = None  # the other record of the same call (SDK span <-> proxy span)


def waterfall(spans: list[Span]) -> tuple[list[Bar], float]:
    """Bars for a trace's spans on one time axis, children under their parents."""
    if not spans:
        return [], 0.0
    start = min(s.start_time for s in spans)
    # Times are kept to the millisecond, durations more precisely: the axis spans both.
    total_ms = max(max((s.start_time - start).total_seconds() * 1000 + max(s.duration, 0.0)
                       for s in spans), 1.0)
    by_parent: dict[str | None, list[Span]] = {}
    ids = {s.span_id for s in spans}
    for span in spans:
        parent = span.parent_span_id if span.parent_span_id in ids else None
        by_parent.setdefault(parent, []).append(span)
    bars: list[Bar] = []
    twins = otlp.duplicate_pairs(spans)

    def walk(parent: str | None, depth: int) -> None:
        for span in sorted(by_parent.get(parent, []), key=lambda s: (s.start_time, s.span_id)):
            offset = (span.start_time - start).total_seconds() * 1000
            ttft = span.attributes.get("ttft_ms")
            bars.append(Bar(
                span, depth, round(offset / total_ms * 100, 3),
                round(max(span.duration, 0.0) / total_ms * 100, 3),
                round(ttft / max(span.duration, 1e-9) * 100, 3) if isinstance(ttft, (int, float)) and span.duration else None,
                span.attributes.get("model") or span.operation,
                twins.get(span.span_id),
            ))
            walk(span.span_id, depth + 1)

    walk(None, 0)
    return bars, total_ms


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


@dataclass
class Message:
    role: str
    text: str


def conversation(span: Span) -> list[Message]:
    """The request's messages as (role, readable text); structured content as indented JSON."""
    out = []
    for message in span.request.get("messages") or []:
        if not isinstance(message, dict):
            out.append(Message("input", content_text(message) or pretty_json(message)))
            continue
        role = str(message.get("role") or "input")
        text = message_text(message)
        extra = {k: v for k, v in message.items() if k not in ("role", "content", "parts")}
        if not text or extra:
            text = (text + "\n" if text else "") + pretty_json(extra or message)
        out.append(Message(role, text))
    return out
