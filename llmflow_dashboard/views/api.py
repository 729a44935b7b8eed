"""JSON API: thin views over the store contract (login session or HTTP Basic required)."""

from __future__ import annotations

from datetime import datetime, timezone

from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.views.decorators.http import require_GET

from llmflow_core.spans import TRACE_ID_RE
from llmflow_core.store import BadCursor, StoreError
from llmflow_dashboard import analytics as charts
from llmflow_dashboard import export, health
from llmflow_dashboard.queries import QueryError, query_from_params
from llmflow_dashboard.repository import store


def _error(message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


@require_GET
def spans(request: HttpRequest) -> JsonResponse:
    try:
        page = store().list_spans(query_from_params(request.GET))
    except (QueryError, BadCursor, ValueError) as exc:
        return _error(str(exc), 400)
    except StoreError as exc:
        return _error(f"store unavailable: {exc}", 503)
    return JsonResponse({"spans": [span.to_json() for span in page.spans], "next": page.next})


@require_GET
def span(request: HttpRequest, span_id: str) -> JsonResponse:
    try:
        found = store().get_span(span_id)
    except StoreError as exc:
        return _error(f"store unavailable: {exc}", 503)
    if found is None:
        return _error("no such span", 404)
    return JsonResponse(found.to_json())


@require_GET
def trace(request: HttpRequest, trace_id: str) -> JsonResponse:
    if not TRACE_ID_RE.match(trace_id):
        return _error("a trace id is 32 lowercase hex digits", 400)
    try:
        found = store().get_trace(trace_id)
    except StoreError as exc:
        return _error(f"store unavailable: {exc}", 503)
    if not found:
        return _error("no such trace", 404)
    return JsonResponse({"traceId": trace_id, "spans": [s.to_json() for s in found]})


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Unauthenticated liveness and store check, for Docker and load balancers."""
    current = store()
    proxies = [{"host": s.get("host"), "pid": s.get("pid"), "written": s.get("written"),
                "spooled": s.get("spooled"), "dropped": s.get("dropped"),
                "store_ok": s.get("store_ok"), "spool_bytes": s.get("spool_bytes")}
               for s in health.proxies()]
    try:
        current.ping()
    except StoreError as exc:
        return JsonResponse({"status": "error", "store": current.name, "error": str(exc),
                             "proxies": proxies}, status=503)
    return JsonResponse({"status": "ok", "store": current.name, "proxies": proxies})


@require_GET
def analytics(request: HttpRequest) -> JsonResponse:
    """Chart data for the current filters (default: the last 24 hours)."""
    bucket = request.GET.get("bucket") or None
    if bucket not in (None, "minute", "hour", "day"):
        return _error("bucket must be minute, hour or day", 400)
    try:
        return JsonResponse(charts.build(store(), query_from_params(request.GET), bucket))
    except (QueryError, ValueError) as exc:
        return _error(str(exc), 400)
    except StoreError as exc:
        return _error(f"store unavailable: {exc}", 503)


def _export(request: HttpRequest, lines, content_type: str, extension: str):
    try:
        query = query_from_params(request.GET)
        spans = store().iter_spans(query)
    except (QueryError, ValueError) as exc:
        return _error(str(exc), 400)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    response = StreamingHttpResponse(lines(spans), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="llmflow-spans-{stamp}.{extension}"'
    return response


@require_GET
def export_csv(request: HttpRequest):
    """The filtered span list as CSV, streamed."""
    return _export(request, export.csv_lines, "text/csv; charset=utf-8", "csv")


@require_GET
def export_jsonl(request: HttpRequest):
    """The filtered span list as JSON Lines (one span document per line), streamed."""
    return _export(request, export.jsonl_lines, "application/x-ndjson; charset=utf-8", "jsonl")
