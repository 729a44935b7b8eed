"""The official OpenAI Python SDK through the real proxy process, read back through the API."""

from __future__ import annotations

import time
import uuid

import openai
import pytest

from tests.support.mock_upstream import REPLY_TEXT
from tests.support.processes import free_port, start_proxy

pytestmark = pytest.mark.e2e
CANARY_KEY = "sk-canary-" + uuid.uuid4().hex


def client(stack, **headers) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.proxy.url + "/v1", api_key=CANARY_KEY, max_retries=0,
                         default_headers=headers or None, timeout=20)


def find(stack, marker: str) -> dict:
    return stack.span_where(lambda s: (s.get("attributes", {}).get("custom") or {}).get("marker") == marker)


def test_non_streamed_call_is_forwarded_unchanged_and_recorded(stack):
    marker = uuid.uuid4().hex
    reply = client(stack, **{"X-Trace-Marker": marker, "X-Trace-User-Id": "user-123"}).chat.completions.create(
        model="gpt-4o-mini", temperature=0.3, max_tokens=50,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say the pangram"}])
    assert reply.choices[0].message.content == REPLY_TEXT
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens

    received = stack.upstream.last("/chat/completions")
    assert received.headers["authorization"] == f"Bearer {CANARY_KEY}"  # forwarded as sent
    assert not any(k.startswith("x-trace-") for k in received.headers)  # ours removed
    assert received.json()["temperature"] == 0.3

    span = find(stack, marker)
    attrs = span["attributes"]
    assert span["status"] == "success"
    assert len(span["traceId"]) == 32 and len(span["spanId"]) == 16
    assert span["operation"] == "chat.completions.create"
    assert attrs["provider"] == "openai"
    assert attrs["request_model"] == "gpt-4o-mini"
    assert attrs["model"] == "gpt-4o-mini-2024-07-18"
    assert attrs["prompt_tokens"] == reply.usage.prompt_tokens
    assert attrs["completion_tokens"] == reply.usage.completion_tokens
    assert attrs["total_tokens"] == reply.usage.total_tokens
    assert attrs["usage_estimated"] is False
    assert attrs["estimated_cost"] > 0
    assert attrs["temperature"] == 0.3 and attrs["max_tokens"] == 50
    assert attrs["finish_reason"] == "stop"
    assert attrs["http_status"] == 200
    assert attrs["request_id"] == "req_mock_1"
    assert attrs["user_id"] == "user-123"
    assert span["response"]["rate_limits"]["x-ratelimit-remaining-requests"] == "4999"
    assert span["request"]["messages"][1]["content"] == "Say the pangram"
    assert span["response"]["output"]["text"] == REPLY_TEXT
    assert span["request"]["headers"]["authorization"] == "[redacted]"
    assert CANARY_KEY not in str(span)
    assert span["duration"] > 0


def test_streamed_call_with_usage(stack):
    marker = uuid.uuid4().hex
    stream = client(stack, **{"X-Trace-Marker": marker}).chat.completions.create(
        model="gpt-4o-mini", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Stream the pangram"}])
    text, usage = "", None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage:
            usage = chunk.usage
    assert text == REPLY_TEXT and usage is not None

    span = find(stack, marker)
    attrs = span["attributes"]
    assert attrs["stream"] is True
    assert span["response"]["output"]["text"] == REPLY_TEXT
    assert attrs["prompt_tokens"] == usage.prompt_tokens
    assert attrs["completion_tokens"] == usage.completion_tokens
    assert attrs["usage_estimated"] is False
    assert attrs["finish_reason"] == "stop"
    # the first word comes one chunk delay (40 ms) after the role chunk; the rest ~400 ms later
    assert 30 <= attrs["ttft_ms"] < span["duration"] - 200
    assert attrs["tokens_per_second"] > 0


def test_streamed_call_without_usage_gets_an_estimate(stack):
    marker = uuid.uuid4().hex
    stream = client(stack, **{"X-Trace-Marker": marker}).chat.completions.create(
        model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "Stream it"}])
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == REPLY_TEXT
    attrs = find(stack, marker)["attributes"]
    assert attrs["usage_estimated"] is True
    assert attrs["completion_tokens"] > 0 and attrs["prompt_tokens"] > 0
    assert attrs["total_tokens"] == attrs["prompt_tokens"] + attrs["completion_tokens"]


def test_stream_reaches_the_client_as_it_is_produced(stack):
    """Not buffered: the first chunk arrives long before the upstream finishes."""
    started = time.perf_counter()
    stream = client(stack).chat.completions.create(
        model="gpt-4o-mini-slow", stream=True, messages=[{"role": "user", "content": "slowly"}])
    first = None
    for chunk in stream:
        if first is None:
            first = time.perf_counter() - started
    total = time.perf_counter() - started
    assert total > 1.4  # ten chunks 150 ms apart
    assert first < 0.5, f"first chunk after {first:.3f}s of {total:.3f}s: the proxy buffered the stream"


def test_upstream_error_is_passed_through_and_recorded(stack):
    marker = uuid.uuid4().hex
    with pytest.raises(openai.BadRequestError) as caught:
        client(stack, **{"X-Trace-Marker": marker}).chat.completions.create(
            model="gpt-4o-mini-error-400", messages=[{"role": "user", "content": "fail"}])
    assert caught.value.status_code == 400
    assert "mock error 400" in caught.value.message
    span = find(stack, marker)
    assert span["status"] == "error"
    assert span["attributes"]["http_status"] == 400
    assert span["error"]["message"] == "mock error 400 for gpt-4o-mini-error-400"
    assert span["error"]["type"] == "invalid_request_error"
    assert span["error"]["status_code"] == 400


def test_unreachable_upstream_gives_502_and_an_error_span(tmp_path, stack):
    closed = free_port()  # nothing listens here
    proxy = start_proxy(stack.data_dir, tmp_path, UPSTREAM_OPENAI=f"http://127.0.0.1:{closed}")
    try:
        broken = openai.OpenAI(base_url=proxy.url + "/v1", api_key=CANARY_KEY, max_retries=0, timeout=20)
        marker = uuid.uuid4().hex
        with pytest.raises(openai.APIStatusError) as caught:
            broken.chat.completions.create(model="gpt-4o-mini", extra_headers={"X-Trace-Marker": marker},
                                           messages=[{"role": "user", "content": "anyone?"}])
        assert caught.value.status_code == 502
        span = find(stack, marker)
    finally:
        proxy.stop()
    assert span["status"] == "error"
    assert span["error"]["type"] == "upstream_unreachable"
    assert span["attributes"]["http_status"] == 502
    assert span["attributes"]["request_model"] == "gpt-4o-mini"


def test_client_disconnect_mid_stream_is_recorded_as_cancelled(stack):
    marker = uuid.uuid4().hex
    stream = client(stack, **{"X-Trace-Marker": marker}).chat.completions.create(
        model="gpt-4o-mini-slow", stream=True, messages=[{"role": "user", "content": "go"}])
    for i, _chunk in enumerate(stream):
        if i == 2:
            break
    stream.close()
    span = find(stack, marker, )
    assert span["status"] == "cancelled"
    assert span["error"]["type"] == "client_disconnected"
    assert span["response"]["output"]["text"].startswith("The")  # what arrived before the cut


def test_json_api_needs_auth_and_healthz_does_not(stack):
    import requests

    assert requests.get(stack.dashboard.url + "/api/spans", timeout=5).status_code == 401
    assert requests.get(stack.dashboard.url + "/api/spans", auth=("llmflow", "wrong"), timeout=5).status_code == 401
    health = requests.get(stack.dashboard.url + "/healthz", timeout=5)
    assert health.status_code == 200
    assert health.json()["status"] == "ok" and health.json()["store"] == "sqlite"
    proxies = health.json()["proxies"]  # each running proxy reports its counters
    assert proxies and all(p["dropped"] == 0 and p["store_ok"] for p in proxies)
    assert sum(p["written"] for p in proxies) > 0
    page = requests.get(stack.dashboard.url + "/", allow_redirects=False, timeout=5)
    assert page.status_code == 302 and page.headers["location"].startswith("/login")


def test_trace_endpoint_groups_calls_by_x_trace_id(stack):
    trace_key = str(uuid.uuid4())
    c = client(stack)
    for step in ("plan", "write"):
        c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": step}],
                                  extra_headers={"X-Trace-Id": trace_key, "X-Trace-Step": step})
    trace_id = trace_key.replace("-", "")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        trace = stack.api(f"/api/traces/{trace_id}") if _exists(stack, trace_id) else None
        if trace and len(trace["spans"]) == 2:
            break
        time.sleep(0.1)
    assert trace["traceId"] == trace_id
    assert [s["attributes"]["step"] for s in trace["spans"]] == ["plan", "write"]


def _exists(stack, trace_id: str) -> bool:
    return bool(stack.api("/api/spans", trace_id=trace_id)["spans"])
