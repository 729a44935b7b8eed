"""Exchange -> Span: decoding, redaction, caps, status, timings, generic calls."""

import gzip
import json
import time

from llmflow_core.capture import CaptureOptions, build_span
from llmflow_core.exchange import BodyTee, Exchange

REQ = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
RESP = json.dumps({"model": "gpt-4o-mini", "choices": [{"index": 0, "message": {"content": "hello"},
                   "finish_reason": "stop"}], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}).encode()


def exchange(**kw) -> Exchange:
    now = time.time()
    base = dict(route="openai", method="POST", url="https://api.openai.com/v1/chat/completions?key=AIzaSECRET",
                path="/v1/chat/completions", request_headers=[("Authorization", "Bearer sk-canary-123456789"),
                                                              ("Content-Type", "application/json")],
                request_body=REQ, started=now - 0.5, status_code=200,
                response_headers=[("content-type", "application/json"), ("set-cookie", "s=1")],
                response_body=RESP, ended=now)
    base.update(kw)
    base.setdefault("response_size", len(base["response_body"]))
    return Exchange(**base)


def test_a_plain_call():
    span = build_span(exchange())
    assert span.status.value == "success" and span.kind == "llm"
    assert span.attributes["total_tokens"] == 7 and span.attributes["estimated_cost"] > 0
    assert 490 < span.duration < 510
    text = json.dumps(span.to_json())
    assert "sk-canary" not in text and "AIzaSECRET" not in text and "s=1" not in text
    assert span.response["body"]["choices"][0]["message"]["content"] == "hello"


def test_gzip_response_is_decoded():
    span = build_span(exchange(response_headers=[("content-type", "application/json"), ("content-encoding", "gzip")],
                               response_body=gzip.compress(RESP)))
    assert span.response["output"]["text"] == "hello"


def test_bodies_are_capped_with_a_flag():
    big = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * 5000}]}).encode()
    span = build_span(exchange(request_body=big), CaptureOptions(max_body_size=1000))
    assert span.attributes["truncated"] is True
    assert isinstance(span.request["body"], str) and len(span.request["body"]) <= 1000


def test_binary_bodies_are_not_stored():
    span = build_span(exchange(route="openai", path="/v1/audio/speech", response_body=b"\x00\x01RIFF" * 100,
                               response_headers=[("content-type", "audio/mpeg")]))
    assert span.kind == "http" and span.operation == "POST /v1/audio/speech"
    assert span.response["body"] == "[600 bytes of binary data not stored]"


def test_upstream_error_status_without_json():
    span = build_span(exchange(status_code=503, response_body=b"<html>bad gateway</html>",
                               response_headers=[("content-type", "text/html")]))
    assert span.status.value == "error"
    assert span.error["type"] == "http_503" and span.error["status_code"] == 503


def test_cut_stream_keeps_head_and_tail():
    tee = BodyTee(head_limit=200)
    chunks = [b'data: {"choices":[{"index":0,"delta":{"content":"w"}}]}\n\n'] * 50
    chunks.append(b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":50}}\n\n')
    for chunk in chunks:
        assert tee(chunk) == chunk  # forwarded unchanged
    ex = exchange(response_body=b"", response_headers=[("content-type", "text/event-stream")])
    tee.fill(ex)
    assert ex.body_cut and len(ex.response_body) < 400
    span = build_span(ex)
    assert span.attributes["completion_tokens"] == 50  # usage found in the tail
    assert span.attributes["stream"] is True


def test_ttft_is_the_chunk_with_the_first_token():
    start = time.time()
    role = b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
    word = b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
    ex = exchange(started=start, ended=start + 1.0, response_headers=[("content-type", "text/event-stream")],
                  response_body=role + word,
                  chunk_times=[(0, start + 0.1), (len(role), start + 0.3)])
    span = build_span(ex)
    assert round(span.attributes["ttft_ms"]) == 300


def test_transport_errors():
    unreachable = build_span(exchange(status_code=None, response_headers=[], response_body=b"",
                                      error="connect failed", client_status=502))
    assert unreachable.status.value == "error" and unreachable.error["type"] == "upstream_unreachable"
    assert unreachable.attributes["http_status"] == 502
    cancelled = build_span(exchange(error="Client disconnected.", cancelled=True, response_body=RESP[:40]))
    assert cancelled.status.value == "cancelled" and cancelled.error["type"] == "client_disconnected"


def test_unknown_model_cost_is_unknown_not_zero():
    resp = RESP.replace(b"gpt-4o-mini", b"my-private-model")
    span = build_span(exchange(response_body=resp, request_body=REQ.replace(b"gpt-4o-mini", b"my-private-model")))
    assert span.attributes["estimated_cost"] is None and span.attributes["cost_known"] is False


def test_malformed_request_is_still_recorded():
    span = build_span(exchange(request_body=b"\xff{{{ not json", response_body=b"{}"))
    assert span.request["body"].startswith("\ufffd{{{")
    assert span.status.value == "success"


def test_a_client_that_hangs_up_after_the_end_of_the_stream_did_not_cancel():
    done = (b'data: {"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}]}\n\n'
            b'data: [DONE]\n\n')
    half = b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
    for body, status in ((done, "success"), (half, "cancelled")):
        span = build_span(exchange(response_body=body, response_headers=[("content-type", "text/event-stream")],
                                   error="Client disconnected.", cancelled=True))
        assert span.status.value == status
