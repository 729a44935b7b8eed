"""From a raw ``Exchange`` to a ``Span``: decode, parse, redact, cap, price.

Runs on the writer thread, never on the proxy's event loop. Never raises for bad input: a body
that cannot be parsed is recorded as far as it can be read.
"""

from __future__ import annotations

import json
import zlib
from collections import deque
from dataclasses import dataclass
from typing import Any

from llmflow_core import pricing, providers
from llmflow_core.exchange import DEFAULT_HEAD_LIMIT, TAIL_BYTES, Exchange
from llmflow_core.providers.base import ParsedCall, Usage, loads
from llmflow_core.redact import (
    TRUNCATED, cap, fit, is_secret_header, redact_headers, redact_text, redact_url, storable,
    storable_text,
)
from llmflow_core.spans import Span, SpanStatus, from_timestamp
from llmflow_core.tracing import trace_context

STREAM_TYPES = ("text/event-stream", "application/x-ndjson", "application/jsonl",
                "application/json-seq")
CHARS_PER_TOKEN = 4  # rough English average, used only when the provider sent no usage
ATTRIBUTE_TEXT_LIMIT = 1024  # characters of one text attribute (model names, ids, reasons)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class CaptureOptions:
    max_body_size: int = 1024 * 1024
    service_name: str = "llmflow-proxy"
    free_providers: frozenset[str] = pricing.FREE_PROVIDERS


def header(headers: list[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


# A compressed body is inflated only so far: a decompression bomb (8 MB of gzip'd zeros is
# 8 GB) must not exhaust the proxy's memory (found by tests/fuzz: 255 KB of gzip took 557 MB and
# 4 s). Like the tee does for a plain body, past DEFAULT_HEAD_LIMIT the head is kept and the
# last TAIL_BYTES (where streams put their usage) of what follows, up to MAX_INFLATED in all.
MAX_INFLATED = 16 * DEFAULT_HEAD_LIMIT
_PIECE = 256 * 1024
_BROTLI_INPUT = 16  # brotli cannot cap its output: fed 16 bytes at a time (~600,000:1 at most)


DECODED_ENCODINGS = ("gzip", "x-gzip", "deflate", "br", "zstd")


def _inflate(data: bytes, encoding: str):
    """Pieces of the decoded body, each of bounded size."""
    if encoding in ("gzip", "x-gzip", "deflate"):
        if encoding == "deflate":
            inflater = zlib.decompressobj()
            try:  # zlib-wrapped, as the RFC says; some servers send raw deflate
                first = inflater.decompress(data, _PIECE)
            except zlib.error:
                inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                first = inflater.decompress(data, _PIECE)
        else:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            first = inflater.decompress(data, _PIECE)
        yield first
        while inflater.unconsumed_tail:
            yield inflater.decompress(inflater.unconsumed_tail, _PIECE)
    elif encoding == "br":
        import brotli  # shipped with mitmproxy; optional elsewhere

        decompressor = brotli.Decompressor()
        for start in range(0, len(data), _BROTLI_INPUT):
            yield decompressor.process(data[start:start + _BROTLI_INPUT])
    elif encoding == "zstd":
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
        while piece := reader.read(_PIECE):
            yield piece


def decode_body(data: bytes, encoding: str | None,
                head_limit: int = DEFAULT_HEAD_LIMIT) -> tuple[bytes, bytes, bool]:
    """(head, tail, cut) of the identity body of a Content-Encoding'd one: the whole body as
    head when it inflates to ``head_limit`` bytes at most; the input unchanged if it cannot be
    decoded (corrupt, or an encoding LLMFlow does not know)."""
    if not data or not encoding:
        return data, b"", False
    head: list[bytes] = []
    tail: deque[bytes] = deque()
    size = tail_size = 0
    encoding = encoding.strip().lower()
    if encoding not in DECODED_ENCODINGS:
        return data, b"", False
    try:
        for piece in _inflate(data, encoding):
            if size < head_limit:
                head.append(piece)
            else:
                tail.append(piece)
                tail_size += len(piece)
                while tail_size - len(tail[0]) >= TAIL_BYTES:
                    tail_size -= len(tail.popleft())
            size += len(piece)
            if size > MAX_INFLATED:
                break
    except Exception:  # corrupt or truncated: keep the raw bytes
        return data, b"", False
    if size <= head_limit:
        return b"".join(head), b"", False
    return b"".join(head)[:head_limit], b"".join(tail)[-TAIL_BYTES:], True


def stored_body(data: bytes, limit: int, content_type: str | None) -> tuple[Any, bool]:
    """What to keep of a body: parsed JSON when small enough, else (capped) text."""
    if not data:
        return None, False
    if len(data) <= limit or not limit:
        parsed = loads(data) if b"{" in data[:64] or b"[" in data[:64] else None
        if parsed is not None:
            return parsed, False
    kept, cut = cap(data, limit)
    if b"\x00" in kept[:1024] or (content_type or "").startswith(("image/", "audio/", "video/",
                                                                    "application/octet-stream")):
        return f"[{len(data)} bytes of binary data not stored]", False
    return redact_text(kept.decode("utf-8", "replace")), cut


def estimate_tokens(value: Any) -> int:
    if value is None:
        return 0
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return max(1, round(len(text) / CHARS_PER_TOKEN)) if text else 0


def _estimate_usage(call: ParsedCall) -> Usage:
    output = call.output.get("text") or call.output.get("tool_calls") or call.output.get("choices")
    prompt = estimate_tokens([m.get("content") for m in call.messages or []])
    completion = estimate_tokens(output)
    return Usage(prompt, completion, prompt + completion, estimated=True)


def _first_token_time(exchange: Exchange, offset: int | None) -> float | None:
    times = exchange.chunk_times
    if not times:
        return None
    if offset is None:
        return times[0][1]
    chosen = times[0][1]
    for start, moment in times:
        if start > offset:
            break
        chosen = moment
    return chosen


def _transport_error(exchange: Exchange) -> dict[str, Any]:
    message = redact_text(exchange.error or "")
    lowered = message.lower()
    if exchange.cancelled:
        kind = "client_disconnected"
    elif "timeout" in lowered or "timed out" in lowered:
        kind = "upstream_timeout"
    elif any(word in lowered for word in ("disconnected", "reset", "closed connection")):
        # connected, then the upstream hung up
        kind = "upstream_disconnected"
    elif exchange.status_code is None:
        kind = "upstream_unreachable"
    else:
        kind = "upstream_disconnected"
    return {"type": kind, "message": message, "status_code": exchange.client_status}


def build_span(exchange: Exchange, options: CaptureOptions = CaptureOptions()) -> Span:
    context = trace_context(exchange.trace_headers)
    limit = options.max_body_size
    req_type = header(exchange.request_headers, "content-type")
    resp_type = header(exchange.response_headers, "content-type") or ""
    streamed = exchange.streamed or resp_type.split(";")[0].strip().lower() in STREAM_TYPES

    response_bytes, tail, body_cut = exchange.response_body, exchange.response_tail, exchange.body_cut
    if not body_cut:
        response_bytes, tail, body_cut = decode_body(
            response_bytes, header(exchange.response_headers, "content-encoding"))
    if body_cut and tail:
        # Head and tail of a huge stream: drop the tail's first (partial) line.
        response_bytes = response_bytes + b"\n\n" + tail.split(b"\n", 1)[-1]

    request_json = loads(exchange.request_body) if exchange.request_body else None
    call: ParsedCall | None = None
    try:
        call = providers.parse(exchange.route, exchange.path, request_json, response_bytes,
                               exchange.status_code, streamed)
    except Exception as exc:  # a parser bug must never lose the span
        call = None
        parse_error = f"{type(exc).__name__}: {exc}"
    else:
        parse_error = None

    attributes: dict[str, Any] = {"provider": exchange.route, "http_status":
                                  exchange.status_code or exchange.client_status, "stream": streamed}
    attributes.update(context.attributes)
    request_id = (header(exchange.response_headers, "x-request-id")
                  or header(exchange.response_headers, "request-id"))
    if request_id:
        attributes["request_id"] = request_id
    rate_limits = {k.lower(): v for k, v in exchange.response_headers
                   if ("ratelimit" in k.lower() or k.lower() in ("retry-after", "retry-after-ms"))
                   and not is_secret_header(k)}  # x-ratelimit-api-key: a secret (tests/fuzz)

    ended = exchange.ended or exchange.started
    error: dict[str, Any] | None = None
    if call is not None:
        usage = call.usage
        if not usage.known and call.output and (exchange.status_code or 0) < 400 and call.endpoint != "embeddings":
            usage = _estimate_usage(call)
        attributes.update({
            "endpoint": call.endpoint,
            "request_model": call.request_model,
            "response_model": call.response_model,
            "model": call.response_model or call.request_model,
            **usage.attributes(),
        })
        # Numbers only: the request may say anything ("max_tokens": a 16 KB string was copied
        # here, past the body cap; tests/fuzz). The parameters keep what was sent.
        for key in ("temperature", "top_p"):
            if _is_number(call.parameters.get(key)):
                attributes[key] = call.parameters[key]
        max_tokens = next((call.parameters[k] for k in ("max_tokens", "max_completion_tokens",
                                                        "max_output_tokens") if k in call.parameters), None)
        if _is_number(max_tokens):
            attributes["max_tokens"] = max_tokens
        if call.finish_reason:
            attributes["finish_reason"] = call.finish_reason
            attributes["finish_reason_raw"] = call.finish_reason_raw
        cost = pricing.estimate_cost(exchange.route, attributes["model"], usage,
                                     options.free_providers)
        attributes["estimated_cost"] = cost
        attributes["cost_known"] = cost is not None
        if streamed:
            first = _first_token_time(exchange, call.first_token_offset)
            if first is not None:
                attributes["ttft_ms"] = round((first - exchange.started) * 1000, 3)
                generating = ended - first
                if usage.completion_tokens and generating > 0:
                    attributes["tokens_per_second"] = round(usage.completion_tokens / generating, 2)
        error = call.error
    if parse_error:
        attributes["parse_error"] = parse_error

    request_body, request_cut = stored_body(exchange.request_body, limit, req_type)
    if streamed or call is not None and call.response_body is not None and not body_cut:
        response_body: Any = call.response_body if call is not None and not streamed else None
        response_cut = body_cut
        if response_body is not None and limit and len(json.dumps(response_body, default=str)) > limit:
            response_body, response_cut = stored_body(response_bytes, limit, resp_type)
    else:
        response_body, response_cut = stored_body(response_bytes, limit, resp_type)
    # Parsed structures (JSON bodies, messages, the assembled output) get the same cap.
    request_body, cut_a = fit(request_body, limit)
    response_body, cut_b = fit(response_body, limit)
    messages, cut_c = fit(call.messages, limit) if call is not None else (None, False)
    output, cut_d = fit(call.output, limit) if call is not None else ({}, False)
    # The request's parameters (tools, metadata, instructions...) are request body too.
    parameters, cut_e = fit(call.parameters, limit) if call is not None else ({}, False)
    if request_cut or response_cut or cut_a or cut_b or cut_c or cut_d or cut_e:
        attributes["truncated"] = True

    status = SpanStatus.SUCCESS
    # SDKs may hang up as soon as they read the end of a stream ([DONE], message_stop...), a
    # moment before the upstream's last empty chunk: a call whose answer finished is a success.
    answered = call is not None and call.finish_reason not in (None, "error")
    if exchange.cancelled and error is None and answered:
        attributes["client_closed_early"] = True
    elif exchange.cancelled and error is None:
        status = SpanStatus.CANCELLED
        error = _transport_error(exchange)
    elif exchange.cancelled:  # the upstream failed first; the client then went away
        status = SpanStatus.ERROR
    elif exchange.error:
        status = SpanStatus.ERROR
        error = error or _transport_error(exchange)
    elif error is not None or (exchange.status_code or 0) >= 400:
        status = SpanStatus.ERROR
        error = error or {"type": f"http_{exchange.status_code}", "message": redact_text(
            str(response_body)[:500]), "status_code": exchange.status_code}
    if error is not None:
        error.setdefault("status_code", exchange.status_code)
        if isinstance(error.get("message"), str):
            error["message"] = redact_text(error["message"])
        error = fit(error, limit)[0]  # an upstream's error message is response body too

    request: dict[str, Any] = {
        "method": exchange.method,
        "url": redact_url(exchange.url),
        "path": redact_url(exchange.path),
        "headers": redact_headers(exchange.request_headers),
        "body": request_body,
    }
    response: dict[str, Any] = {
        "status_code": exchange.status_code,
        "headers": redact_headers(exchange.response_headers),
        "body": response_body,
        "size": exchange.response_size,
    }
    if call is not None:
        request["messages"] = messages
        request["parameters"] = parameters
        response["output"] = output
        if streamed:
            response["events"] = call.events
    if rate_limits:
        response["rate_limits"] = rate_limits

    operation = call.operation if call is not None else f"{exchange.method} {exchange.path.split('?')[0]}"
    # Headers, method and attributes come straight from the wire (mitmproxy hands non-UTF-8
    # header bytes over as lone surrogates; a parameter may be NaN or a 100-digit number): made
    # storable so that no span can fail the batch it is written in (found by tests/fuzz). The
    # bodies, messages, output, parameters and error are already, by ``fit``.
    for part in (request, response):
        part["headers"] = storable(part["headers"])
    request["method"] = storable_text(request["method"])
    if "rate_limits" in response:
        response["rate_limits"] = storable(response["rate_limits"])
    attributes = storable(attributes)
    # Attribute text comes from the request or response too (a 1 MB "model"): kept short.
    long_text = [key for key, value in attributes.items()
                 if isinstance(value, str) and len(value) > ATTRIBUTE_TEXT_LIMIT]
    for key in long_text:
        attributes[key] = attributes[key][:ATTRIBUTE_TEXT_LIMIT] + TRUNCATED
    if long_text:
        attributes["truncated"] = True
    return Span(
        trace_id=context.trace_id,
        span_id=context.span_id,
        parent_span_id=context.parent_span_id,
        service=storable_text(context.service or options.service_name),
        operation=storable_text(operation),
        kind="llm" if call is not None else "http",
        start_time=from_timestamp(exchange.started),
        end_time=from_timestamp(ended),
        duration=round((ended - exchange.started) * 1000, 3),
        status=status,
        attributes={k: v for k, v in attributes.items() if v is not None or k == "estimated_cost"},
        request=request,
        response=response,
        error=error,
    )
