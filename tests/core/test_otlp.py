"""OTLP in and out (llmflow_core.otlp): both generations of OpenLLMetry attributes, protobuf and
OTLP/JSON, malformed payloads, the export round trip and the duplicate-coverage rule.

Payloads are built here with the opentelemetry-proto classes, the way an SDK's exporter builds
them (no network, nothing read from outside the repository).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import textwrap
import time
from datetime import timedelta

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue, ArrayValue, InstrumentationScope, KeyValue,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span as PbSpan, Status

from llmflow_core import otlp, pricing
from llmflow_core.capture import build_span
from llmflow_core.exchange import Exchange
from llmflow_core.providers.base import Usage
from llmflow_core.spans import Span, SpanSource, SpanStatus, new_span_id, new_trace_id
from tests.support.factories import T0, make_span
from tests.support.processes import ROOT

TRACE = "5b8efff798038103d269b633813fc60c"
START_NS = 1_795_176_000_123_456_789  # 2026-11-20T12:00:00.123456789Z
PROTOBUF = "application/x-protobuf"
JSON = "application/json"


# -- building payloads like an exporter does -----------------------------------------------------
def value(v) -> AnyValue:
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, (list, tuple)):
        return AnyValue(array_value=ArrayValue(values=[value(item) for item in v]))
    return AnyValue(string_value=str(v))


def kvs(attributes: dict) -> list[KeyValue]:
    return [KeyValue(key=k, value=value(v)) for k, v in attributes.items()]


def pb_span(name: str, attributes: dict, *, span_id: str | None = None, parent: str | None = None,
            trace: str = TRACE, start_ns: int = START_NS, duration_ms: float = 840.5, kind: int = 3,
            status: int = 0, message: str = "", events=()) -> PbSpan:
    span = PbSpan(trace_id=bytes.fromhex(trace), span_id=bytes.fromhex(span_id or new_span_id()),
                  name=name, kind=kind, start_time_unix_nano=start_ns,
                  end_time_unix_nano=start_ns + int(duration_ms * 1_000_000),
                  attributes=kvs(attributes), status=Status(code=status, message=message))
    if parent:
        span.parent_span_id = bytes.fromhex(parent)
    for event in events:
        span.events.add(**event)
    return span


def request_of(*spans: PbSpan, service: str = "joke-app") -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=Resource(attributes=kvs({"service.name": service, "telemetry.sdk.language": "python"})),
        scope_spans=[ScopeSpans(scope=InstrumentationScope(name="opentelemetry.instrumentation.openai.v1",
                                                           version="0.45.6"), spans=list(spans))])])


def protobuf(*spans: PbSpan, **kw) -> bytes:
    return request_of(*spans, **kw).SerializeToString()


def otlp_json(*spans: PbSpan, **kw) -> bytes:
    """OTLP/JSON as the spec has it: hex ids, lowerCamelCase, enums as integers, int64 as strings."""
    doc = json_format.MessageToDict(request_of(*spans, **kw), use_integers_for_enums=True)
    for resource_spans in doc["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return json.dumps(doc).encode()


def decode(body: bytes, content_type: str = PROTOBUF) -> list[Span]:
    return otlp.decode_request(body, content_type)


def one(body: bytes, content_type: str = PROTOBUF) -> Span:
    spans = decode(body, content_type)
    assert len(spans) == 1
    return spans[0]


# -- the same OpenAI call in both generations -----------------------------------------------------
SYSTEM, QUESTION, ANSWER = "Be brief.", "Tell me a joke about owls", "Owls give a hoot."
SDK_SPAN, PARENT = "1111111111111111", "2222222222222222"

CURRENT_OPENAI = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.request.temperature": 0.3,
    "gen_ai.request.max_tokens": 50,
    "gen_ai.request.top_p": 0.9,
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    "gen_ai.response.id": "chatcmpl-123",
    "gen_ai.response.finish_reasons": ["stop"],
    "gen_ai.usage.input_tokens": 21,
    "gen_ai.usage.output_tokens": 10,
    "gen_ai.usage.total_tokens": 31,
    "gen_ai.is_streaming": False,
    "gen_ai.input.messages": json.dumps([
        {"role": "system", "parts": [{"type": "text", "content": SYSTEM}]},
        {"role": "user", "parts": [{"type": "text", "content": QUESTION}]}]),
    "gen_ai.output.messages": json.dumps([
        {"role": "assistant", "parts": [{"type": "text", "content": ANSWER}], "finish_reason": "stop"}]),
    "traceloop.workflow.name": "jokes",
    "traceloop.association.properties.user_id": "user-42",
    "traceloop.association.properties.session_id": "sess-7",
    "traceloop.association.properties.tenant": "acme",
}
LEGACY_OPENAI = {  # what traceloop-sdk 0.45.6's OpenAI instrumentation writes
    "llm.request.type": "chat",
    "gen_ai.system": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.request.temperature": 0.3,
    "gen_ai.request.max_tokens": 50,
    "gen_ai.request.top_p": 0.9,
    "llm.headers": "{'traceparent': '00-5b8efff798038103d269b633813fc60c-1111111111111111-01'}",
    "llm.is_streaming": False,
    "gen_ai.openai.api_base": "http://127.0.0.1:8080/v1/",
    "gen_ai.prompt.0.role": "system",
    "gen_ai.prompt.0.content": SYSTEM,
    "gen_ai.prompt.1.role": "user",
    "gen_ai.prompt.1.content": QUESTION,
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    "gen_ai.response.id": "chatcmpl-123",
    "llm.usage.total_tokens": 31,
    "gen_ai.usage.completion_tokens": 10,
    "gen_ai.usage.prompt_tokens": 21,
    "gen_ai.usage.cache_read_input_tokens": 0,
    "gen_ai.completion.0.finish_reason": "stop",
    "gen_ai.completion.0.role": "assistant",
    "gen_ai.completion.0.content": ANSWER,
    "traceloop.workflow.name": "jokes",
    "traceloop.association.properties.user_id": "user-42",
    "traceloop.association.properties.session_id": "sess-7",
    "traceloop.association.properties.tenant": "acme",
}
SHARED = ("provider", "model", "request_model", "response_model", "endpoint", "prompt_tokens",
          "completion_tokens", "total_tokens", "estimated_cost", "cost_known", "finish_reason",
          "temperature", "max_tokens", "top_p", "stream", "usage_estimated", "user_id",
          "session_id", "custom")


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
def test_current_generation_openai_span(content_type):
    encode = protobuf if content_type == PROTOBUF else otlp_json
    span = one(encode(pb_span("openai.chat", CURRENT_OPENAI, span_id=SDK_SPAN, parent=PARENT)),
               content_type)
    attrs = span.attributes
    assert (span.trace_id, span.span_id, span.parent_span_id) == (TRACE, SDK_SPAN, PARENT)
    assert span.source is SpanSource.OTLP and span.kind == "llm"
    assert span.service == "joke-app" and span.operation == "openai.chat"
    assert span.start_time == T0 + timedelta(milliseconds=123)  # unix nanos, kept to the ms
    assert span.duration == 840.5 and span.status is SpanStatus.SUCCESS and span.error is None
    assert attrs["provider"] == "openai" and attrs["endpoint"] == "chat"
    assert attrs["request_model"] == "gpt-4o-mini"
    assert attrs["model"] == attrs["response_model"] == "gpt-4o-mini-2024-07-18"
    assert (attrs["prompt_tokens"], attrs["completion_tokens"], attrs["total_tokens"]) == (21, 10, 31)
    assert attrs["usage_estimated"] is False
    expected = pricing.estimate_cost("openai", "gpt-4o-mini-2024-07-18", Usage(21, 10, 31))
    assert expected and attrs["estimated_cost"] == expected and attrs["cost_known"] is True
    assert (attrs["temperature"], attrs["max_tokens"], attrs["top_p"]) == (0.3, 50, 0.9)
    assert attrs["stream"] is False and attrs["finish_reason"] == "stop"
    assert (attrs["user_id"], attrs["session_id"], attrs["custom"]) == ("user-42", "sess-7", {"tenant": "acme"})
    assert span.request["messages"] == [{"role": "system", "content": SYSTEM},
                                        {"role": "user", "content": QUESTION}]
    assert span.request["parameters"] == {"temperature": 0.3, "max_tokens": 50, "top_p": 0.9,
                                          "stream": False}
    assert span.response["output"] == {"text": ANSWER}
    # The sender's raw data is all kept.
    otel = attrs["otel"]
    assert otel["attributes"]["gen_ai.response.id"] == "chatcmpl-123"
    assert otel["attributes"]["gen_ai.response.finish_reasons"] == ["stop"]
    assert otel["resource"] == {"service.name": "joke-app", "telemetry.sdk.language": "python"}
    assert otel["scope"] == {"name": "opentelemetry.instrumentation.openai.v1", "version": "0.45.6"}
    assert otel["span_kind"] == "client"


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
def test_both_generations_fill_the_same_fields(content_type):
    encode = protobuf if content_type == PROTOBUF else otlp_json
    current = one(encode(pb_span("openai.chat", CURRENT_OPENAI)), content_type)
    legacy = one(encode(pb_span("openai.chat", LEGACY_OPENAI)), content_type)
    assert {k: current.attributes.get(k) for k in SHARED} == {k: legacy.attributes.get(k) for k in SHARED}
    assert current.request["messages"] == legacy.request["messages"]
    assert current.response["output"] == legacy.response["output"]
    assert legacy.attributes["cached_tokens"] == 0  # the legacy SDK reports 0, kept as sent
    assert legacy.request["url"] == "http://127.0.0.1:8080/v1/"


def test_ingested_span_looks_like_the_proxied_one():
    """The proxy's span of a call and the SDK's span of the same call agree on what matters."""
    request = {"model": "gpt-4o-mini", "temperature": 0.3, "max_tokens": 50, "top_p": 0.9,
               "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]}
    response = {"id": "chatcmpl-123", "model": "gpt-4o-mini-2024-07-18",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 21, "completion_tokens": 10, "total_tokens": 31}}
    now = time.time()
    proxied = build_span(Exchange(route="openai", method="POST", url="https://api.openai.com/v1/chat/completions",
                                  path="/v1/chat/completions", request_headers=[], started=now - 0.8,
                                  request_body=json.dumps(request).encode(), status_code=200,
                                  response_headers=[("content-type", "application/json")],
                                  response_body=json.dumps(response).encode(), ended=now))
    ingested = one(protobuf(pb_span("openai.chat", LEGACY_OPENAI)))
    keys = [k for k in SHARED if k not in ("user_id", "session_id", "custom")]
    assert {k: ingested.attributes.get(k) for k in keys} == {k: proxied.attributes.get(k) for k in keys}
    assert ingested.request["messages"] == proxied.request["messages"]
    assert ingested.response["output"] == proxied.response["output"]


ANTHROPIC_CURRENT = {
    "gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
    "gen_ai.request.model": "claude-3-5-haiku-latest", "gen_ai.response.model": "claude-3-5-haiku-20241022",
    # OpenLLMetry counts the cache INTO the input tokens: 100 fresh + 1024 read + 256 written.
    "gen_ai.usage.input_tokens": 1380, "gen_ai.usage.output_tokens": 18,
    "gen_ai.usage.cache_read.input_tokens": 1024, "gen_ai.usage.cache_creation.input_tokens": 256,
    "gen_ai.response.finish_reasons": ["stop"],
    "gen_ai.system_instructions": json.dumps([{"type": "text", "content": SYSTEM}]),
    "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": QUESTION}]}]),
    "gen_ai.output.messages": json.dumps([{"role": "assistant", "finish_reason": "stop", "parts": [
        {"type": "reasoning", "content": "Owls... hoot."}, {"type": "text", "content": ANSWER}]}]),
}
ANTHROPIC_LEGACY = {  # traceloop-sdk 0.45.6: prompt_tokens = input + cache read + cache creation
    "llm.request.type": "chat", "gen_ai.system": "Anthropic",
    "gen_ai.request.model": "claude-3-5-haiku-latest", "gen_ai.response.model": "claude-3-5-haiku-20241022",
    "gen_ai.usage.prompt_tokens": 1380, "gen_ai.usage.completion_tokens": 18, "llm.usage.total_tokens": 1398,
    "gen_ai.usage.cache_read_input_tokens": 1024, "gen_ai.usage.cache_creation_input_tokens": 256,
    "gen_ai.prompt.0.role": "system", "gen_ai.prompt.0.content": SYSTEM,
    "gen_ai.prompt.1.role": "user", "gen_ai.prompt.1.content": QUESTION,
    "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": ANSWER,
    "gen_ai.completion.0.finish_reason": "end_turn",
}


@pytest.mark.parametrize("attributes", [ANTHROPIC_CURRENT, ANTHROPIC_LEGACY], ids=["current", "legacy"])
def test_anthropic_input_tokens_include_the_cache(attributes):
    attrs = one(protobuf(pb_span("anthropic.chat", attributes))).attributes
    assert attrs["provider"] == "anthropic"
    assert (attrs["prompt_tokens"], attrs["cached_tokens"], attrs["cache_creation_tokens"]) == (100, 1024, 256)
    assert attrs["completion_tokens"] == 18
    # Priced exactly as the proxy prices the same call (its prompt_tokens exclude the cache).
    expected = pricing.estimate_cost("anthropic", "claude-3-5-haiku-20241022",
                                     Usage(100, 18, 118, cached_tokens=1024, cache_creation_tokens=256))
    assert expected and attrs["estimated_cost"] == pytest.approx(expected)
    assert attrs["finish_reason"] == "stop"


def test_anthropic_system_instructions_and_reasoning():
    span = one(protobuf(pb_span("anthropic.chat", ANTHROPIC_CURRENT)))
    assert span.request["messages"][0] == {"role": "system", "content": SYSTEM}
    assert span.response["output"] == {"text": ANSWER, "reasoning": "Owls... hoot."}


def test_an_input_count_smaller_than_the_cache_cannot_include_it():
    attrs = one(protobuf(pb_span("anthropic.chat", {**ANTHROPIC_CURRENT, "gen_ai.usage.input_tokens": 100}))).attributes
    assert attrs["prompt_tokens"] == 100


def test_tool_calls_in_both_generations():
    current = {**CURRENT_OPENAI, "gen_ai.response.finish_reasons": ["tool_call"],
               "gen_ai.output.messages": json.dumps([{"role": "assistant", "finish_reason": "tool_call", "parts": [
                   {"type": "tool_call", "id": "call_1", "name": "get_weather",
                    "arguments": {"location": "Paris"}}]}]),
               "gen_ai.tool.definitions": json.dumps([{"type": "function", "function": {"name": "get_weather"}}])}
    legacy = {**LEGACY_OPENAI, "gen_ai.completion.0.finish_reason": "tool_calls",
              "gen_ai.completion.0.content": "",
              "gen_ai.completion.0.tool_calls.0.id": "call_1",
              "gen_ai.completion.0.tool_calls.0.name": "get_weather",
              "gen_ai.completion.0.tool_calls.0.arguments": '{"location": "Paris"}',
              "llm.request.functions.0.name": "get_weather",
              # a tool result in the conversation
              "gen_ai.prompt.2.role": "tool", "gen_ai.prompt.2.content": "18C",
              "gen_ai.prompt.2.tool_call_id": "call_0"}
    for attributes in (current, legacy):
        span = one(protobuf(pb_span("openai.chat", attributes)))
        assert span.response["output"]["tool_calls"] == [
            {"id": "call_1", "name": "get_weather", "arguments": {"location": "Paris"}}]
        assert span.attributes["finish_reason"] == "tool_calls"
        assert span.request["parameters"]["tools"] == [{"type": "function", "function": {"name": "get_weather"}}]
    assert span.request["messages"][2] == {"role": "tool", "content": "18C", "tool_call_id": "call_0"}


def test_streamed_call_without_usage_is_estimated_like_the_proxy_does():
    attributes = {k: v for k, v in LEGACY_OPENAI.items() if "usage" not in k}
    attrs = one(protobuf(pb_span("openai.chat", {**attributes, "llm.is_streaming": True}))).attributes
    assert attrs["stream"] is True and attrs["usage_estimated"] is True
    assert attrs["prompt_tokens"] > 0 and attrs["completion_tokens"] > 0 and attrs["estimated_cost"] > 0


def test_llmflow_attributes_sent_by_the_app_win():
    attrs = one(protobuf(pb_span("openai.chat", {**CURRENT_OPENAI, otlp.TTFT_ATTRIBUTE: 182.5,
                                                 "llmflow.feature": "jokes"}))).attributes
    assert attrs["ttft_ms"] == 182.5 and attrs["feature"] == "jokes"


# -- workflow spans and errors ------------------------------------------------------------------------
def test_workflow_task_agent_tool_spans_keep_names_kinds_and_status():
    workflow = pb_span("jokes.workflow", {"traceloop.span.kind": "workflow", "traceloop.entity.name": "jokes",
                                          "traceloop.entity.input": json.dumps({"args": [], "kwargs": {"topic": "owls"}}),
                                          "traceloop.entity.output": json.dumps("Owls give a hoot."),
                                          "traceloop.association.properties.user_id": "user-42"},
                       kind=1, span_id="aaaaaaaaaaaaaaaa")
    task = pb_span("ask.task", {"traceloop.span.kind": "task", "traceloop.entity.name": "ask"},
                   kind=1, span_id="bbbbbbbbbbbbbbbb", parent="aaaaaaaaaaaaaaaa")
    agent = pb_span("planner.agent", {"traceloop.span.kind": "agent"}, kind=1, parent="aaaaaaaaaaaaaaaa")
    tool = pb_span("search.tool", {"traceloop.span.kind": "tool"}, kind=1, parent="bbbbbbbbbbbbbbbb",
                   status=2, message="search backend down",
                   events=[{"name": "exception", "time_unix_nano": START_NS + 5, "attributes": kvs({
                       "exception.type": "TimeoutError", "exception.message": "timed out",
                       "exception.stacktrace": "Traceback..."})}])
    plain = pb_span("db.query", {"db.system": "postgresql"}, kind=3)
    http = pb_span("GET", {"http.request.method": "GET", "url.full": "https://example.com/x",
                           "http.response.status_code": 200}, kind=3)
    spans = {s.operation: s for s in decode(otlp_json(workflow, task, agent, tool, plain, http), JSON)}
    assert [spans[n].kind for n in ("jokes.workflow", "ask.task", "planner.agent", "search.tool", "db.query", "GET")] \
        == ["workflow", "task", "agent", "tool", "internal", "http"]
    assert spans["ask.task"].parent_span_id == "aaaaaaaaaaaaaaaa"
    assert spans["jokes.workflow"].request == {"body": {"args": [], "kwargs": {"topic": "owls"}}}
    assert spans["jokes.workflow"].response == {"body": "Owls give a hoot."}
    assert spans["jokes.workflow"].attributes["user_id"] == "user-42"
    assert "estimated_cost" not in spans["jokes.workflow"].attributes  # only LLM spans are priced
    failed = spans["search.tool"]
    assert failed.status is SpanStatus.ERROR
    assert failed.error == {"type": "TimeoutError", "message": "search backend down", "stacktrace": "Traceback..."}
    assert failed.attributes["otel"]["events"][0]["name"] == "exception"
    assert spans["GET"].request == {"method": "GET", "url": "https://example.com/x"}
    assert spans["GET"].attributes["http_status"] == 200


def test_failed_llm_call():
    span = one(protobuf(pb_span("openai.chat", {**{k: v for k, v in CURRENT_OPENAI.items() if "usage" not in k
                                                   and "output" not in k}, "error.type": "RateLimitError"},
                                status=2, message="Error code: 429")))
    assert span.status is SpanStatus.ERROR
    assert span.error == {"type": "RateLimitError", "message": "Error code: 429"}
    assert span.attributes["estimated_cost"] is None and span.attributes["cost_known"] is False


def test_secrets_in_attributes_are_redacted():
    span = one(protobuf(pb_span("openai.chat", {**LEGACY_OPENAI,
                                                "llm.headers": "{'Authorization': 'Bearer sk-live-0123456789abcdef'}",
                                                "http.request.header.x-api-key": ["sk-ant-api03-secret"]})))
    text = json.dumps(span.to_json())
    assert "sk-live-0123456789abcdef" not in text and "sk-ant-api03-secret" not in text


# -- OTLP/JSON rules and malformed payloads ------------------------------------------------------------
def test_otlp_json_details():
    doc = {"resource_spans": [{  # snake_case is accepted too (proto3 JSON)
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": TRACE.upper(), "spanId": "ABCDEFABCDEF0123", "parentSpanId": "",
            "name": "openai.chat", "kind": "SPAN_KIND_CLIENT",
            "startTimeUnixNano": START_NS, "endTimeUnixNano": str(START_NS + 2_000_000),
            "attributes": [{"key": "gen_ai.system", "value": {"stringValue": "openai"}},
                           {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "7"}},
                           {"key": "gen_ai.usage.output_tokens", "value": {"intValue": 3}},
                           {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
                           {"key": "some.bytes", "value": {"bytesValue": "AAE="}},
                           {"key": "some.kvlist", "value": {"kvlistValue": {"values": [
                               {"key": "a", "value": {"doubleValue": 1.5}}]}}},
                           {"key": "unknown.field", "value": {"stringValue": "x"}, "extra": True}],
            "status": {"code": 1}, "someFutureField": 1}]}]}]}
    span = one(json.dumps(doc).encode(), "application/json; charset=utf-8")
    assert (span.trace_id, span.span_id, span.parent_span_id) == (TRACE, "abcdefabcdef0123", None)
    assert span.duration == 2.0 and span.status is SpanStatus.SUCCESS
    assert (span.attributes["prompt_tokens"], span.attributes["completion_tokens"]) == (7, 3)
    otel = span.attributes["otel"]
    assert otel["attributes"]["some.bytes"] == "AAE=" and otel["attributes"]["some.kvlist"] == {"a": 1.5}
    assert otel["span_kind"] == "client" and otel["status"] == {"code": "ok"}


def test_empty_requests_are_fine():
    assert decode(b"") == [] and decode(b"{}", JSON) == []


@pytest.mark.parametrize("body, content_type", [
    (b"\xff\xfe not protobuf at all \x00\x01", PROTOBUF),
    (b"\x0a\xff\xff\xff\xff\x0f", PROTOBUF),  # a length running past the end
    (b"{not json", JSON),
    (b"\xff\xfe", JSON),
    (b"[1, 2]", JSON),
    (json.dumps({"resourceSpans": 5}).encode(), JSON),
    (json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}).encode(), JSON),
    (json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": [
        {"key": "k", "value": {"intValue": "NaN"}}]}]}]}]}).encode(), JSON),
    (b"[" * 100_000, JSON),
])
def test_malformed_payloads_are_a_clear_error(body, content_type):
    with pytest.raises(otlp.OTLPError):
        decode(body, content_type)


def test_unsupported_content_type():
    with pytest.raises(otlp.UnsupportedMediaType):
        decode(b"{}", "text/plain")


def test_unusable_spans_are_rejected_and_the_others_kept():
    good = pb_span("ok", {}, span_id="0123456789abcdef")
    zero_trace = pb_span("zero trace", {}, trace="0" * 32)
    short_id = pb_span("short id", {})
    short_id.span_id = b"\x01\x02"
    no_start = pb_span("no start", {}, start_ns=0)
    backwards = pb_span("backwards", {})
    backwards.end_time_unix_nano = backwards.start_time_unix_nano - 5
    result = otlp.parse_request(protobuf(good, zero_trace, short_id, no_start, backwards), PROTOBUF)
    assert [s.operation for s in result.spans] == ["ok", "backwards"]
    assert result.spans[1].duration == 0
    assert result.rejected == 3 and "invalid trace id" in result.error_message
    # In OTLP/JSON a span id that is not hex is the span's problem, not the request's.
    doc = json.loads(otlp_json(good))
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"].append(
        {**doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0], "spanId": "not-hex-at-all!!"})
    result = otlp.parse_request(json.dumps(doc).encode(), JSON)
    assert len(result.spans) == 1 and result.rejected == 1


# -- the export and the round trip ------------------------------------------------------------------
def proxied_stream_span() -> Span:
    chunks = [b'data: {"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n',
              b'data: {"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
              b'"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}\n\n', b"data: [DONE]\n\n"]
    now = time.time()
    return build_span(Exchange(
        route="openai", method="POST", url="https://api.openai.com/v1/chat/completions",
        path="/v1/chat/completions", request_headers=[("authorization", "Bearer sk-canary-1234567890")],
        request_body=json.dumps({"model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True},
                                 "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}).encode(),
        started=now - 0.4, status_code=200, response_headers=[("content-type", "text/event-stream"),
                                                              ("x-ratelimit-remaining-requests", "99")],
        response_body=b"".join(chunks), chunk_times=[(0, now - 0.3), (len(chunks[0]), now - 0.1)],
        streamed=True, ended=now, trace_headers=[("x-trace-user-id", "u1"), ("x-trace-tenant", "acme")]))


def ingested_spans() -> list[Span]:
    return decode(protobuf(
        pb_span("openai.chat", LEGACY_OPENAI, span_id=SDK_SPAN, parent=PARENT),
        pb_span("anthropic.chat", ANTHROPIC_CURRENT),
        pb_span("jokes.workflow", {"traceloop.span.kind": "workflow",
                                   "traceloop.entity.input": '{"a": 1}'}, kind=1, span_id=PARENT),
        pb_span("search.tool", {"traceloop.span.kind": "tool"}, status=2, message="down",
                events=[{"name": "exception", "time_unix_nano": START_NS, "attributes": kvs({"exception.type": "E"})}]),
    ))


def round_trip_cases() -> list[Span]:
    cancelled = make_span(status="error").with_changes(status=SpanStatus.CANCELLED, error={"type": "client_disconnected",
                                                                                             "message": ""})
    return [make_span(), make_span(prompt_tokens=None, completion_tokens=None, cost=None, custom={"a": "b"},
                                   duplicate_of="0123456789abcdef", empty={}, nothing=[], flag=True),
            cancelled, proxied_stream_span(), *ingested_spans()]


@pytest.mark.parametrize("span", round_trip_cases(), ids=lambda s: f"{s.source.value}-{s.kind}-{s.operation}")
def test_export_reads_back_as_the_same_span(span):
    doc = otlp.encode_json([span])
    assert one(json.dumps(doc).encode(), JSON) == span
    assert one(otlp.encode_protobuf([span]), PROTOBUF) == span


def test_export_carries_the_current_gen_ai_names():
    span = proxied_stream_span()
    doc = otlp.encode_json([span])
    resource = doc["resourceSpans"][0]
    assert resource["resource"]["attributes"] == [{"key": "service.name", "value": {"stringValue": "llmflow-proxy"}}]
    encoded = resource["scopeSpans"][0]["spans"][0]
    assert encoded["traceId"] == span.trace_id and encoded["spanId"] == span.span_id and encoded["kind"] == 3
    attrs = {a["key"]: a["value"] for a in encoded["attributes"]}
    assert attrs["gen_ai.provider.name"] == {"stringValue": "openai"}
    assert attrs["gen_ai.operation.name"] == {"stringValue": "chat"}
    assert attrs["gen_ai.request.model"] == {"stringValue": "gpt-4o-mini"}
    assert attrs["gen_ai.response.model"] == {"stringValue": "gpt-4o-mini-2024-07-18"}
    assert attrs["gen_ai.usage.input_tokens"] == {"intValue": "5"}
    assert attrs["gen_ai.usage.output_tokens"] == {"intValue": "1"}
    assert attrs["gen_ai.response.finish_reasons"] == {"arrayValue": {"values": [{"stringValue": "stop"}]}}
    assert attrs["gen_ai.is_streaming"] == {"boolValue": True}
    assert json.loads(attrs["gen_ai.input.messages"]["stringValue"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "hi"}]}]
    assert json.loads(attrs["gen_ai.output.messages"]["stringValue"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "Hi"}], "finish_reason": "stop"}]
    assert attrs[otlp.TTFT_ATTRIBUTE]["doubleValue"] == span.attributes["ttft_ms"]
    assert attrs["traceloop.association.properties.user_id"] == {"stringValue": "u1"}
    assert not any(key.startswith(("gen_ai.prompt.", "gen_ai.completion.", "llm.")) for key in attrs)
    assert "sk-canary" not in json.dumps(doc)


def test_export_without_llmflow_attributes_still_maps_to_the_same_call():
    """Another tool's view of the export (gen_ai.* only) gives LLMFlow the same call back."""
    for span in (proxied_stream_span(), ingested_spans()[0], ingested_spans()[1]):
        doc = otlp.encode_json([span])
        encoded = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
        encoded["attributes"] = [a for a in encoded["attributes"] if not a["key"].startswith("llmflow.")]
        again = one(json.dumps(doc).encode(), JSON)
        for key in ("provider", "model", "request_model", "prompt_tokens", "completion_tokens", "total_tokens",
                    "cached_tokens", "cache_creation_tokens", "estimated_cost", "finish_reason"):
            assert again.attributes.get(key) == span.attributes.get(key), key
        assert again.response["output"].get("text") == span.response["output"].get("text")
        assert [m.get("role") for m in again.request["messages"]] == [m.get("role") for m in span.request["messages"]]


def test_services_become_resources():
    a, b = make_span(service="one"), make_span(service="two")
    doc = otlp.encode_json([a, b, make_span(service="one")])
    services = [r["resource"]["attributes"][0]["value"]["stringValue"] for r in doc["resourceSpans"]]
    assert services == ["one", "two"]
    assert sorted(s.service for s in decode(json.dumps(doc).encode(), JSON)) == ["one", "one", "two"]


def test_answers():
    assert otlp.response_body("protobuf") == b"" and otlp.response_body("json") == b"{}"
    partial = json.loads(otlp.response_body("json", rejected=2, message="bad ids"))
    assert partial == {"partialSuccess": {"rejectedSpans": "2", "errorMessage": "bad ids"}}
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
    answer = ExportTraceServiceResponse.FromString(otlp.response_body("protobuf", rejected=2, message="x"))
    assert answer.partial_success.rejected_spans == 2
    assert otlp.status_body("protobuf", 3, "bad") == b"\x08\x03\x12\x03bad"


def test_the_encoder_needs_no_protobuf_classes():
    script = textwrap.dedent("""
        import sys
        from llmflow_core import otlp
        from tests.support.factories import make_span
        otlp.encode_json([make_span()])
        print(",".join(sorted(m for m in sys.modules if m.startswith(("opentelemetry", "google.protobuf")))))
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


# -- duplicate coverage ----------------------------------------------------------------------------
def sdk_and_proxy() -> tuple[Span, Span]:
    sdk = ingested_spans()[0]  # openai.chat, OTLP
    proxy = make_span(trace_id=sdk.trace_id, parent=sdk.span_id, start=sdk.start_time + timedelta(milliseconds=2))
    return sdk, proxy


def test_the_rule():
    sdk, proxy = sdk_and_proxy()
    assert otlp.same_call(sdk, proxy)
    assert not otlp.same_call(proxy, sdk)
    assert not otlp.same_call(sdk, proxy.with_changes(kind="http"))
    assert not otlp.same_call(sdk, proxy.with_changes(parent_span_id=new_span_id()))
    assert not otlp.same_call(sdk.with_changes(kind="task"), proxy)


def test_the_record_stored_second_is_marked():
    sdk, proxy = sdk_and_proxy()
    # Proxy first: the SDK span is marked when it comes in.
    [marked] = otlp.mark_duplicates([sdk], stored=[proxy])
    assert marked.attributes["duplicate_of"] == proxy.span_id
    # SDK first: the proxy's span is the one marked (for a writer that checks).
    [marked_proxy] = otlp.mark_duplicates([proxy], stored=[sdk])
    assert marked_proxy.attributes["duplicate_of"] == sdk.span_id
    # Together: the SDK span is the duplicate, the proxy's record (the provider's bytes) counts.
    both = otlp.mark_duplicates([sdk, proxy], stored=[])
    assert both[0].attributes["duplicate_of"] == proxy.span_id and "duplicate_of" not in both[1].attributes
    # Unrelated spans are untouched; the trace to look up is the one with the LLM span.
    other = make_span()
    assert otlp.mark_duplicates([other], stored=[sdk]) == [other]
    assert otlp.traces_to_check([sdk, ingested_spans()[2]]) == {sdk.trace_id}


def test_retries_under_one_sdk_span():
    sdk, proxy = sdk_and_proxy()
    failed = make_span(status="error", trace_id=sdk.trace_id, parent=sdk.span_id, start=sdk.start_time)
    [marked] = otlp.mark_duplicates([sdk], stored=[failed, proxy])
    assert marked.attributes["duplicate_of"] == proxy.span_id


def test_presentation_and_totals_whatever_the_order():
    sdk, proxy = sdk_and_proxy()
    workflow = ingested_spans()[2]
    marked_sdk = otlp.mark_duplicates([sdk], [proxy])[0]
    marked_proxy = otlp.mark_duplicates([proxy], [sdk])[0]
    for spans, counted_llm in (([workflow, sdk, proxy], proxy),  # neither marked: the proxy's counts
                               ([workflow, marked_sdk, proxy], proxy),  # proxy stored first
                               ([workflow, sdk, marked_proxy], sdk)):  # SDK stored first
        assert otlp.duplicate_pairs(spans) == {sdk.span_id: proxy.span_id, proxy.span_id: sdk.span_id}
        kept = otlp.counted(spans)
        assert kept == [workflow, counted_llm]
        assert sum(s.attributes.get("estimated_cost") or 0 for s in kept) == counted_llm.attributes["estimated_cost"]


# -- every store keeps an ingested span as it came ------------------------------------------------
def test_stores_keep_ingested_spans(store):
    far_event = pb_span("odd.event", {}, events=[{"name": "late", "time_unix_nano": 2**64 - 1}])
    spans = ingested_spans() + decode(protobuf(far_event))
    assert spans[-1].attributes["otel"]["events"][0]["time_unix_nano"] == 2**63 - 1  # fits every store
    assert store.write_batch(spans) == len(spans)
    assert store.write_batch(spans) == 0  # an exporter's retry is harmless
    for span in spans:
        assert store.get_span(span.span_id) == span
    assert {s.span_id for s in store.get_trace(TRACE)} == {s.span_id for s in spans if s.trace_id == TRACE}


def test_random_ids_round_trip():
    span = make_span(trace_id=new_trace_id())
    assert one(otlp.encode_protobuf([span])) == span


def test_only_spans_read_back_from_an_export_are_kept_verbatim():
    fresh = ingested_spans()
    again = otlp.parse_request(json.dumps(otlp.encode_json(fresh[:2])).encode(), JSON)
    assert again.verbatim == {s.span_id for s in fresh[:2]}
    assert otlp.parse_request(protobuf(pb_span("openai.chat", LEGACY_OPENAI)), PROTOBUF).verbatim == set()


def test_entity_input_that_is_not_json_is_kept_as_text():
    span = one(protobuf(pb_span("t.task", {"traceloop.span.kind": "task", "traceloop.entity.input": "plain words",
                                           "traceloop.entity.output": "null"})))
    assert span.request == {"body": "plain words"} and span.response == {"body": None}
