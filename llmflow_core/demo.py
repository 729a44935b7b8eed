"""Realistic, varied demo spans: for screenshots, trying the dashboard, and benchmarks.

Deterministic for a given seed. Spans look like proxied calls of several providers and models,
with conversations, streams (TTFT), tool calls, errors, cancelled calls, users and features, and
some multi-step traces (an agent run whose steps share a trace id).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import Iterator

from llmflow_core.spans import Span, SpanStatus

MODELS = [  # (provider, model, $ per 1M input tokens, $ per 1M output tokens)
    ("openai", "gpt-4o-mini-2024-07-18", 0.15, 0.60),
    ("openai", "gpt-4o-2024-08-06", 2.50, 10.0),
    ("openai", "o3-mini-2025-01-31", 1.10, 4.40),
    ("anthropic", "claude-3-5-haiku-20241022", 0.80, 4.0),
    ("anthropic", "claude-sonnet-4-20250514", 3.0, 15.0),
    ("gemini", "gemini-2.0-flash", 0.10, 0.40),
    ("ollama", "llama3.2:3b", 0.0, 0.0),
]
OPERATIONS = {"openai": "chat.completions.create", "anthropic": "messages.create",
              "gemini": "generate_content", "ollama": "chat"}
QUESTIONS = [
    "Summarise this support ticket in two sentences", "Translate the release notes to German",
    "What's the weather in San Francisco?", "Write a haiku about programming",
    "Explain quantum computing in simple terms", "Extract the invoice total as JSON",
    "Plan a three-day trip to Tokyo", "Suggest a name for a coffee shop",
    "Classify the sentiment of this review", "Rewrite this paragraph to be friendlier",
]
ANSWERS = [
    "Sure! Here is a short summary of the ticket: the customer cannot log in after the update.",
    "Hier sind die Versionshinweise auf Deutsch.", "I'll look that up for you.",
    "Semicolons fall / like autumn leaves on the code / the build passes green",
    "A quantum computer uses qubits, which can be 0 and 1 at the same time.",
    '{"total": 1234.50, "currency": "EUR"}', "Day 1: Asakusa and Ueno. Day 2: Shibuya.",
    "The Daily Grind", "positive", "Thanks so much for reaching out!",
]
USERS = [f"user-{n:03d}" for n in range(40)]
FEATURES = ["chat-widget", "summaries", "search", "agent", "translations"]
ERRORS = [(429, "rate_limit_exceeded", "Rate limit reached for requests"),
          (500, "server_error", "The server had an error while processing your request"),
          (400, "invalid_request_error", "This model's maximum context length is 128000 tokens"),
          (529, "overloaded_error", "Overloaded")]


def _hex(rng: random.Random, digits: int) -> str:
    return f"{rng.getrandbits(digits * 4):0{digits}x}"


def demo_spans(count: int, *, end: datetime | None = None, days: float = 7.0,
               seed: int = 7) -> Iterator[Span]:
    """``count`` spans spread over the ``days`` before ``end``, oldest first."""
    rng = random.Random(seed)
    end = end or datetime.now(timezone.utc)
    window = timedelta(days=days).total_seconds()
    step = window / max(count, 1)
    made = 0
    while made < count:
        start = end - timedelta(seconds=window - made * step + rng.random() * step)
        trace_id = _hex(rng, 32)
        steps = rng.choice([1] * 8 + [3, 4])  # most calls alone, some agent runs
        parent = None
        for index in range(min(steps, count - made)):
            span = _one(rng, trace_id, parent, start, index if steps > 1 else None)
            yield span
            parent = parent or span.span_id  # later steps hang under the first one
            start += timedelta(milliseconds=rng.randint(300, 3000))
            made += 1


def _one(rng: random.Random, trace_id: str, parent: str | None, start: datetime,
         step: int | None) -> Span:
    provider, model, price_in, price_out = rng.choice(MODELS)
    question = rng.randrange(len(QUESTIONS))
    stream = rng.random() < 0.45
    prompt_tokens = rng.randint(12, 4000)
    completion_tokens = rng.randint(5, 900)
    roll = rng.random()
    status = SpanStatus.ERROR if roll < 0.04 else SpanStatus.CANCELLED if roll < 0.05 else SpanStatus.SUCCESS
    duration = rng.lognormvariate(6.6, 0.6)  # ~730 ms median, long tail
    attributes: dict = {
        "provider": provider, "model": model, "request_model": model.rsplit("-20", 1)[0],
        "response_model": model, "endpoint": "chat", "stream": stream,
        "temperature": rng.choice([0, 0.2, 0.7, 1.0]), "max_tokens": rng.choice([256, 1024, 4096]),
        "user_id": rng.choice(USERS), "feature": rng.choice(FEATURES),
        "session_id": f"sess-{rng.randint(1, 400):04d}", "http_status": 200,
        "usage_estimated": False, "finish_reason": "stop", "finish_reason_raw": "stop",
    }
    if step is not None:
        attributes["step"] = ["plan", "search", "draft", "review"][step % 4]
    error = None
    output: dict = {"text": ANSWERS[question]}
    if status is SpanStatus.SUCCESS:
        attributes.update(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                          total_tokens=prompt_tokens + completion_tokens,
                          estimated_cost=round((prompt_tokens * price_in + completion_tokens * price_out) / 1e6, 8),
                          cost_known=True)
        if rng.random() < 0.2:
            attributes["cached_tokens"] = prompt_tokens // 2
        if question == 2:
            output = {"tool_calls": [{"id": "call_demo", "name": "get_weather",
                                      "arguments": {"location": "San Francisco"}}]}
            attributes["finish_reason"] = attributes["finish_reason_raw"] = "tool_calls"
    elif status is SpanStatus.ERROR:
        code, kind, message = rng.choice(ERRORS)
        attributes.update(http_status=code, finish_reason=None, finish_reason_raw=None)
        error = {"type": kind, "message": message, "status_code": code}
        output = {}
        duration /= 4
    else:
        error = {"type": "client_disconnected", "message": "Client disconnected.", "status_code": None}
        output = {"text": ANSWERS[question][:20]}
    if stream and status is not SpanStatus.ERROR:
        attributes["ttft_ms"] = round(min(duration, rng.lognormvariate(5.6, 0.4)), 3)
        attributes["tokens_per_second"] = round(completion_tokens / max(duration / 1000, 0.05), 2)
    return Span(
        trace_id=trace_id, span_id=_hex(rng, 16), parent_span_id=parent, service="demo-app",
        operation=OPERATIONS[provider], start_time=start,
        end_time=start + timedelta(milliseconds=duration), duration=round(duration, 3),
        status=status, attributes={k: v for k, v in attributes.items() if v is not None},
        request={"method": "POST", "url": f"https://api.{provider}.example/v1/chat",
                 "messages": [{"role": "system", "content": "You are a helpful assistant."},
                              {"role": "user", "content": QUESTIONS[question]}],
                 "parameters": {"temperature": attributes["temperature"],
                                "max_tokens": attributes["max_tokens"], "stream": stream}},
        response={"status_code": attributes["http_status"], "output": output},
        error=error,
    )
