"""OTLP/HTTP receiver (``/v1/traces``, ``/v1/metrics``, ``/v1/logs``) and the OTLP/JSON export.

An app instrumented with the Traceloop SDK (or any OpenTelemetry exporter over OTLP/HTTP) sets
``TRACELOOP_BASE_URL=http://<llmflow host>:3000`` and its spans land next to the proxied ones.
Thin views: decoding and the attribute mapping live in ``llmflow_core.otlp``.

Answers follow the OTLP/HTTP spec: 200 with an ``ExportTraceServiceResponse`` in the request's
content type (partial success when some spans were unusable), 400 for bad data (not retried by
exporters), 401 without the ingest token when one is set, 413 above the size limit (also for a
gzip body that inflates past it), 415 for other content types or encodings, 503 with
``Retry-After`` while the store is down (exporters retry).

``/v1/`` is public in ``auth.PUBLIC_PREFIXES``: the ingest token (``OTLP_INGEST_TOKEN``) is the
receiver's own, optional, protection. The export lives under ``/api/`` (login required).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import zlib

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from llmflow_core import otlp, pricing
from llmflow_core.config import parse_size
from llmflow_core.spans import TRACE_ID_RE
from llmflow_core.store import StoreError
from llmflow_dashboard.repository import store

log = logging.getLogger("llmflow.otlp")

DEFAULT_MAX_BODY_SIZE = "16MB"
RETRY_AFTER_SECONDS = 5
# gRPC status codes carried by the google.rpc.Status bodies of error answers.
INVALID_ARGUMENT, RESOURCE_EXHAUSTED, INTERNAL, UNAVAILABLE, UNAUTHENTICATED = 3, 8, 13, 14, 16


# -- settings (read through settings.LLMFLOW once llmflow_core.config defines them) -------------
def ingest_token() -> str:
    """OTLP_INGEST_TOKEN: when set, /v1/* needs ``Authorization: Bearer <token>``."""
    value = getattr(settings.LLMFLOW, "otlp_ingest_token", None)
    if value is None:
        value = os.environ.get("OTLP_INGEST_TOKEN", "")
    return value.strip()


def max_body_size() -> int:
    """OTLP_MAX_BODY_SIZE: largest request body, before and after gzip (413 above it)."""
    value = getattr(settings.LLMFLOW, "otlp_max_body_size", None)
    if isinstance(value, int) and value > 0:
        return value
    text = os.environ.get("OTLP_MAX_BODY_SIZE", DEFAULT_MAX_BODY_SIZE)
    try:
        size = parse_size(text)
    except ValueError:
        log.error("OTLP_MAX_BODY_SIZE=%r is not a size; using %s", text, DEFAULT_MAX_BODY_SIZE)
        size = 0
    return size or parse_size(DEFAULT_MAX_BODY_SIZE)


def free_providers() -> frozenset[str]:
    return getattr(settings.LLMFLOW, "free_providers", pricing.FREE_PROVIDERS)


# -- answers ------------------------------------------------------------------------------------
def _answer(kind: str | None, status: int, body: bytes, **headers: str) -> HttpResponse:
    response = HttpResponse(body, status=status,
                            content_type=otlp.CONTENT_TYPES.get(kind or otlp.JSON))
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def _failure(kind: str | None, status: int, code: int, message: str, **headers: str) -> HttpResponse:
    return _answer(kind, status, otlp.status_body(kind, code, message), **headers)


class _Refused(Exception):
    def __init__(self, response: HttpResponse) -> None:
        self.response = response


def _check_token(request: HttpRequest, kind: str | None) -> None:
    token = ingest_token()
    if not token:
        return
    scheme, _, value = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode()):
        return
    raise _Refused(_failure(kind, 401, UNAUTHENTICATED, "missing or wrong ingest token "
                            "(Authorization: Bearer <OTLP_INGEST_TOKEN>)",
                            WWW_Authenticate='Bearer realm="LLMFlow OTLP"'))


def _content_kind(request: HttpRequest) -> str:
    kind = otlp.media_kind(request.content_type)
    if kind is None:
        raise _Refused(_failure(None, 415, INVALID_ARGUMENT,
                                f"unsupported content type {request.content_type or '(none)'!r}: "
                                "send application/x-protobuf or application/json"))
    return kind


def _read_body(request: HttpRequest, kind: str, limit: int) -> bytes:
    """The request body, gunzipped, never more than ``limit`` bytes held (413 beyond)."""
    too_large = _Refused(_failure(kind, 413, RESOURCE_EXHAUSTED,
                                  f"request body larger than {limit} bytes"))
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise _Refused(_failure(kind, 400, INVALID_ARGUMENT, "bad Content-Length")) from None
    if declared > limit:
        raise too_large
    chunks, size = [], 0
    while size <= limit:
        chunk = request.read(min(65536, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise too_large
    body = b"".join(chunks)

    encoding = request.META.get("HTTP_CONTENT_ENCODING", "").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip"):
        raise _Refused(_failure(kind, 415, INVALID_ARGUMENT,
                                f"unsupported content encoding {encoding!r}: send gzip or none"))
    return _gunzip(body, kind, limit)


def _gunzip(data: bytes, kind: str, limit: int) -> bytes:
    """Inflate at most ``limit`` bytes: a gzip bomb is refused after reading ``limit + 1``."""
    out: list[bytes] = []
    size = 0
    try:
        while data:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            piece = inflater.decompress(data, limit + 1 - size)
            size += len(piece)
            out.append(piece)
            if size > limit or inflater.unconsumed_tail:
                raise _Refused(_failure(kind, 413, RESOURCE_EXHAUSTED,
                                        f"gzip body inflates past {limit} bytes"))
            if not inflater.eof:
                raise _Refused(_failure(kind, 400, INVALID_ARGUMENT, "truncated gzip body"))
            data = inflater.unused_data  # concatenated gzip members
    except zlib.error as exc:
        raise _Refused(_failure(kind, 400, INVALID_ARGUMENT, f"not a gzip body: {exc}")) from None
    return b"".join(out)


# -- views --------------------------------------------------------------------------------------
@csrf_exempt
@require_POST
def traces(request: HttpRequest) -> HttpResponse:
    kind = otlp.media_kind(request.content_type)
    try:
        _check_token(request, kind)
        kind = _content_kind(request)
        body = _read_body(request, kind, max_body_size())
    except _Refused as refused:
        return refused.response
    try:
        decoded = otlp.parse_request(body, kind, free_providers=free_providers())
    except otlp.OTLPError as exc:
        log.info("OTLP request refused: %s", exc)
        return _failure(kind, 400, INVALID_ARGUMENT, str(exc))

    spans = decoded.spans
    try:
        current = store()
        if spans:
            stored = [span for trace_id in sorted(otlp.traces_to_check(spans))
                      for span in current.get_trace(trace_id)]
            spans = otlp.mark_duplicates(spans, stored, keep=decoded.verbatim)
            current.write_batch(spans)
    except StoreError as exc:
        log.warning("OTLP spans not stored, the store is unavailable: %s", exc)
        return _failure(kind, 503, UNAVAILABLE, f"store unavailable: {exc}",
                        Retry_After=str(RETRY_AFTER_SECONDS))
    except Exception as exc:  # e.g. a span the store cannot hold (MongoDB's 16 MB document cap)
        log.exception("OTLP spans not stored")
        return _failure(kind, 500, INTERNAL, f"spans not stored: {type(exc).__name__}: {exc}")
    if decoded.rejected:
        log.info("OTLP: %d span(s) rejected: %s", decoded.rejected, decoded.error_message)
    return _answer(kind, 200, otlp.response_body(kind, rejected=decoded.rejected,
                                                 message=decoded.error_message))


@csrf_exempt
@require_POST
def accepted_and_dropped(request: HttpRequest) -> HttpResponse:
    """/v1/metrics and /v1/logs: LLMFlow keeps traces only; the SDK gets a clean, empty success
    (an empty Export*ServiceResponse is zero bytes in protobuf, ``{}`` in JSON)."""
    kind = otlp.media_kind(request.content_type)
    try:
        _check_token(request, kind)
        kind = _content_kind(request)
    except _Refused as refused:
        return refused.response
    return _answer(kind, 200, b"" if kind == otlp.PROTOBUF else b"{}")


@require_GET
def export_trace(request: HttpRequest, trace_id: str) -> HttpResponse:
    """A trace as an OTLP/JSON ExportTraceServiceRequest (current gen_ai.* names), as a download.

    Posting the file to /v1/traces stores the same spans again (ids kept: a no-op on the same
    LLMFlow, a faithful copy on another)."""
    if not TRACE_ID_RE.match(trace_id):
        return JsonResponse({"error": "a trace id is 32 lowercase hex digits"}, status=400)
    try:
        spans = store().get_trace(trace_id)
    except StoreError as exc:
        return JsonResponse({"error": f"store unavailable: {exc}"}, status=503)
    if not spans:
        return JsonResponse({"error": "no such trace"}, status=404)
    body = json.dumps(otlp.encode_json(spans), ensure_ascii=False, default=str)
    response = HttpResponse(body.encode("utf-8"), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="trace-{trace_id}.otlp.json"'
    return response
