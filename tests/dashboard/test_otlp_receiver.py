"""The OTLP/HTTP receiver (/v1/traces, /v1/metrics, /v1/logs) and the OTLP/JSON export, through
Django's test client on both store doubles."""

from __future__ import annotations

import dataclasses
import gzip
import json
import zlib

import pytest
from django.conf import settings
from django.test import Client
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from llmflow_core import otlp
from llmflow_core.config import parse_size
from llmflow_core.store import StoreError
from tests.core.test_otlp import (
    CURRENT_OPENAI, LEGACY_OPENAI, SDK_SPAN, TRACE, ingested_spans, otlp_json, pb_span, protobuf,
)
from tests.support.factories import make_span

PB = "application/x-protobuf"
JSON = "application/json"


def post(client: Client, body: bytes, content_type: str = PB, path: str = "/v1/traces", **headers):
    return client.generic("POST", path, body, content_type=content_type, **headers)


def batch() -> bytes:
    return protobuf(pb_span("jokes.workflow", {"traceloop.span.kind": "workflow"}, span_id="2222222222222222", kind=1),
                    pb_span("openai.chat", LEGACY_OPENAI, span_id=SDK_SPAN, parent="2222222222222222"))


@pytest.fixture
def configure(monkeypatch):
    """Set an OTLP setting, in the environment and, once llmflow_core.config defines it, in
    settings.LLMFLOW (where the views read it first)."""
    def set_setting(name: str, value: str) -> None:
        monkeypatch.setenv(name, value)
        field = name.lower()
        if hasattr(settings.LLMFLOW, field):
            parsed = parse_size(value) if name == "OTLP_MAX_BODY_SIZE" else value
            monkeypatch.setattr(settings, "LLMFLOW", dataclasses.replace(settings.LLMFLOW, **{field: parsed}))
    return set_setting


@pytest.fixture
def anonymous(data) -> Client:
    return Client(enforce_csrf_checks=True)  # an exporter has no session and no CSRF token


def test_protobuf_is_stored_and_answered_in_protobuf(anonymous, data):
    response = post(anonymous, batch())
    assert response.status_code == 200
    assert response["Content-Type"] == PB and response.content == b""  # empty ExportTraceServiceResponse
    stored = data.get_span(SDK_SPAN)
    assert stored.source.value == "otlp" and stored.kind == "llm"
    assert stored.attributes["model"] == "gpt-4o-mini-2024-07-18" and stored.attributes["estimated_cost"] > 0
    assert stored.parent_span_id == "2222222222222222"
    assert sorted(s.operation for s in data.get_trace(TRACE)) == ["jokes.workflow", "openai.chat"]


def test_json_is_stored_and_answered_in_json(anonymous, data):
    response = post(anonymous, otlp_json(pb_span("openai.chat", CURRENT_OPENAI, span_id=SDK_SPAN)),
                    "application/json; charset=utf-8")
    assert response.status_code == 200 and response["Content-Type"] == JSON and response.json() == {}
    assert data.get_span(SDK_SPAN).attributes["prompt_tokens"] == 21


def test_retried_export_is_harmless(anonymous, data):
    assert post(anonymous, batch()).status_code == 200
    assert post(anonymous, batch()).status_code == 200
    assert len(data.get_trace(TRACE)) == 2


def test_gzip(anonymous, data):
    assert post(anonymous, gzip.compress(batch()), HTTP_CONTENT_ENCODING="gzip").status_code == 200
    assert data.get_span(SDK_SPAN) is not None
    # Concatenated gzip members are one body.
    body = otlp_json(pb_span("x", {}, span_id="3333333333333333"))
    half = len(body) // 2
    response = post(anonymous, gzip.compress(body[:half]) + gzip.compress(body[half:]), JSON,
                    HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 200 and data.get_span("3333333333333333") is not None


def zeros_gzipped(size: int) -> bytes:
    deflater = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"\x00" * (1 << 20)
    out = [deflater.compress(block) for _ in range(size >> 20)]
    return b"".join(out) + deflater.flush()


def test_gzip_bomb_is_refused_without_inflating_it(anonymous, data, configure):
    configure("OTLP_MAX_BODY_SIZE", "1MB")
    bomb = zeros_gzipped(64 << 20)  # 64 MB of zeros in ~64 KB
    assert len(bomb) < 100_000
    response = post(anonymous, bomb, HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 413
    assert b"inflates past" in response.content


def test_default_limit_refuses_a_large_bomb(anonymous, data):
    response = post(anonymous, zeros_gzipped(40 << 20), JSON, HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 413 and response.json()["code"] == 8


def test_oversized_body(anonymous, data, configure):
    configure("OTLP_MAX_BODY_SIZE", "64KB")
    response = post(anonymous, b"\x00" * (64 * 1024 + 1))
    assert response.status_code == 413 and response["Content-Type"] == PB
    big = otlp_json(pb_span("big", {"x": "y" * 70_000}))
    assert post(anonymous, big, JSON).status_code == 413
    assert post(anonymous, otlp_json(pb_span("small", {"x": "y" * 1000})), JSON).status_code == 200


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "", "multipart/form-data; boundary=x"])
def test_other_content_types(anonymous, data, content_type):
    response = post(anonymous, b"{}", content_type)
    assert response.status_code == 415 and "application/x-protobuf" in response.json()["message"]


def test_other_content_encodings(anonymous, data):
    assert post(anonymous, batch(), HTTP_CONTENT_ENCODING="br").status_code == 415


@pytest.mark.parametrize("body, content_type, encoding", [
    (b"\xff\xfe garbage \x00", PB, ""),
    (b"{broken", JSON, ""),
    (json.dumps({"resourceSpans": "nope"}).encode(), JSON, ""),
    (b"this is not gzip", PB, "gzip"),
    (gzip.compress(b"\x00" * 1000)[:-12], PB, "gzip"),  # truncated
])
def test_bad_data_is_400(anonymous, data, body, content_type, encoding):
    headers = {"HTTP_CONTENT_ENCODING": encoding} if encoding else {}
    response = post(anonymous, body, content_type, **headers)
    assert response.status_code == 400 and response["Content-Type"] == content_type
    if content_type == JSON:
        assert response.json()["code"] == 3 and response.json()["message"]
    else:
        assert response.content.startswith(b"\x08\x03\x12")  # google.rpc.Status{code: 3, message}


def test_partial_success(anonymous, data):
    bad = pb_span("bad", {})
    bad.span_id = b"\x00" * 8
    response = post(anonymous, protobuf(pb_span("good", {}, span_id="4444444444444444"), bad))
    assert response.status_code == 200
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_spans == 1 and "invalid span id" in answer.partial_success.error_message
    assert data.get_span("4444444444444444") is not None
    doc = json.loads(otlp_json(pb_span("good", {})))
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] = "0" * 32
    response = post(anonymous, json.dumps(doc).encode(), JSON)
    assert response.status_code == 200 and response.json()["partialSuccess"]["rejectedSpans"] == "1"


def test_methods(anonymous, data):
    for path in ("/v1/traces", "/v1/metrics", "/v1/logs"):
        assert anonymous.get(path).status_code == 405


@pytest.mark.parametrize("path", ["/v1/metrics", "/v1/logs"])
def test_metrics_and_logs_are_answered_cleanly(anonymous, data, path):
    response = post(anonymous, b"\x0a\x00", PB, path)
    assert response.status_code == 200 and response["Content-Type"] == PB and response.content == b""
    response = post(anonymous, b'{"resourceMetrics": []}', JSON, path)
    assert response.status_code == 200 and response.json() == {}
    assert post(anonymous, b"x", "text/plain", path).status_code == 415


def test_ingest_token(anonymous, data, configure):
    configure("OTLP_INGEST_TOKEN", "s3cret-token")
    for path in ("/v1/traces", "/v1/metrics", "/v1/logs"):
        refused = post(anonymous, batch(), path=path)
        assert refused.status_code == 401 and refused["WWW-Authenticate"].startswith("Bearer")
        assert post(anonymous, batch(), path=path, HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
        assert post(anonymous, batch(), path=path, HTTP_AUTHORIZATION="Basic czNjcmV0LXRva2Vu").status_code == 401
    assert data.get_span(SDK_SPAN) is None
    for path in ("/v1/traces", "/v1/metrics", "/v1/logs"):
        assert post(anonymous, batch(), path=path, HTTP_AUTHORIZATION="Bearer s3cret-token").status_code == 200
    assert data.get_span(SDK_SPAN) is not None
    # The dashboard login is no substitute for the token.
    logged = Client()
    assert logged.post("/login", {"username": "llmflow", "password": "password"}).status_code == 302
    assert post(logged, batch()).status_code == 401


def test_store_outage_asks_the_exporter_to_retry(anonymous, data, monkeypatch):
    def down(spans):
        raise StoreError("disk full")

    monkeypatch.setattr(data, "write_batch", down)
    response = post(anonymous, batch())
    assert response.status_code == 503 and response["Retry-After"] == "5"


def test_sdk_span_after_the_proxy_span_is_marked_duplicate(anonymous, data):
    proxy = make_span(trace_id=TRACE, parent=SDK_SPAN)
    data.write_batch([proxy])
    assert post(anonymous, batch()).status_code == 200
    sdk = data.get_span(SDK_SPAN)
    assert sdk.attributes["duplicate_of"] == proxy.span_id
    assert otlp.counted(data.get_trace(TRACE)) == [s for s in data.get_trace(TRACE) if s.span_id != SDK_SPAN]


def test_sdk_span_before_the_proxy_span_is_paired_when_shown(anonymous, data):
    assert post(anonymous, batch()).status_code == 200
    proxy = make_span(trace_id=TRACE, parent=SDK_SPAN)
    data.write_batch([proxy])
    assert "duplicate_of" not in data.get_span(SDK_SPAN).attributes
    spans = data.get_trace(TRACE)
    assert otlp.duplicate_pairs(spans)[SDK_SPAN] == proxy.span_id
    assert SDK_SPAN not in {s.span_id for s in otlp.counted(spans)}


# -- the export ------------------------------------------------------------------------------------
def test_export_is_a_login_protected_download(logged_in, data):
    spans = ingested_spans()
    proxy = make_span(trace_id=TRACE, parent=SDK_SPAN)
    data.write_batch([*spans, proxy])
    response = logged_in.get(f"/api/traces/{TRACE}/otlp")
    assert response.status_code == 200 and response["Content-Type"] == JSON
    assert response["Content-Disposition"] == f'attachment; filename="trace-{TRACE}.otlp.json"'
    doc = json.loads(response.content)
    exported = [s for r in doc["resourceSpans"] for ss in r["scopeSpans"] for s in ss["spans"]]
    assert {s["spanId"] for s in exported} == {s.span_id for s in data.get_trace(TRACE)}
    keys = {a["key"] for s in exported for a in s["attributes"]}
    assert {"gen_ai.provider.name", "gen_ai.usage.input_tokens", "gen_ai.input.messages"} <= keys
    assert not any(k.startswith(("gen_ai.prompt.", "gen_ai.completion.")) for k in keys)

    assert Client().get(f"/api/traces/{TRACE}/otlp").status_code == 401
    assert logged_in.get("/api/traces/not-a-trace/otlp").status_code == 400
    assert logged_in.get("/api/traces/" + "e" * 32 + "/otlp").status_code == 404
    # The trace page links to it.
    assert f'href="/api/traces/{TRACE}/otlp"' in logged_in.get(f"/traces/{TRACE}").content.decode()


def test_export_fed_back_reproduces_the_spans(logged_in, data, sqlite_store, mongomock_store):
    from llmflow_dashboard import repository

    originals = [*ingested_spans(), make_span(trace_id=TRACE, parent=SDK_SPAN, ttft_ms=120.5, custom={"a": "b"})]
    data.write_batch(originals)
    exported = logged_in.get(f"/api/traces/{TRACE}/otlp").content
    other = mongomock_store if data is sqlite_store else sqlite_store  # another LLMFlow
    repository.use_store(other)
    assert post(Client(), exported, JSON).status_code == 200
    assert sorted(other.get_trace(TRACE), key=lambda s: s.span_id) == sorted(data.get_trace(TRACE), key=lambda s: s.span_id)
    # And in protobuf, as an OpenTelemetry exporter would send it.
    third_store = data
    repository.use_store(third_store)
    assert post(Client(), gzip.compress(otlp.encode_protobuf(other.get_trace(TRACE))), PB,
                HTTP_CONTENT_ENCODING="gzip").status_code == 200
    assert sorted(data.get_trace(TRACE), key=lambda s: s.span_id) == sorted(other.get_trace(TRACE), key=lambda s: s.span_id)


def test_a_batch_the_store_cannot_hold_is_a_clean_500(anonymous, data, monkeypatch):
    def refuses(spans):
        raise OverflowError("MongoDB can only handle up to 8-byte ints")

    monkeypatch.setattr(data, "write_batch", refuses)
    response = post(anonymous, otlp_json(pb_span("x", {})), JSON)
    assert response.status_code == 500 and response.json()["code"] == 13
