"""HTML pages: login, the live trace list, a trace's waterfall. Thin: store -> presenters -> template."""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from llmflow_core import otlp
from llmflow_core.spans import TRACE_ID_RE
from llmflow_core.store import BadCursor, StoreError
from llmflow_dashboard import auth, presenters
from llmflow_dashboard.queries import TIME_PRESETS, QueryError, filter_params, query_from_params
from llmflow_dashboard.repository import store


@require_http_methods(["GET", "POST"])
def login(request: HttpRequest) -> HttpResponse:
    error = None
    status = 200
    if request.method == "POST":
        if auth.locked_out(request):
            error, status = "Too many failed attempts. Try again in a few minutes.", 429
        elif auth.check_credentials(request.POST.get("username", ""),
                                    request.POST.get("password", "")):
            auth.clear_failures(request)
            request.session.cycle_key()
            request.session[auth.SESSION_KEY] = request.POST["username"]
            return redirect(auth.safe_next(request, request.POST.get("next")))
        else:
            auth.record_failure(request)
            error, status = "Wrong username or password.", 401
    return render(request, "llmflow/login.html",
                  {"error": error, "next": request.GET.get("next") or request.POST.get("next", "")},
                  status=status)


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    request.session.flush()
    return redirect("/login")


@require_GET
def traces(request: HttpRequest) -> HttpResponse:
    filters = filter_params(request.GET)
    error, status, page = None, 200, None
    try:
        page = store().list_spans(query_from_params(request.GET))
    except (QueryError, BadCursor, ValueError) as exc:
        error, status = str(exc), 400
    except StoreError as exc:
        error, status = f"The store is not answering: {exc}", 503
    next_url = None
    if page is not None and page.next:
        next_url = "?" + urlencode([*filters, ("cursor", page.next)])
    return render(request, "llmflow/traces.html", {
        **_filter_context(request, filters),
        "rows": presenters.rows(page.spans if page else []),
        "error": error,
        "next_url": next_url,
        "live": not request.GET.get("cursor"),
    }, status=status)


def _filter_context(request: HttpRequest, filters: list[tuple[str, str]]) -> dict[str, object]:
    """What the shared filter form needs: current values, presets, suggestions."""
    suggestions: dict[str, list[str]] = {}
    try:
        for field in ("model", "provider", "feature"):
            suggestions[field] = store().distinct(field, limit=100)
    except StoreError:
        pass
    return {
        "f": request.GET,
        "attrs": [a for a in request.GET.getlist("attr") if a],
        "filters": filters,
        "has_filters": bool(filters),
        "query_string": urlencode(filters),
        "presets": TIME_PRESETS,
        "suggestions": suggestions,
    }


@require_GET
def analytics(request: HttpRequest) -> HttpResponse:
    filters = filter_params(request.GET)
    error = None
    try:
        query_from_params(request.GET)
    except (QueryError, ValueError) as exc:
        error = str(exc)
    return render(request, "llmflow/analytics.html", {**_filter_context(request, filters),
                                                      "error": error},
                  status=400 if error else 200)


@require_GET
def new_rows(request: HttpRequest) -> HttpResponse:
    """Table rows of spans newer than ``since`` (the live list polls this; rendered here so the
    page and the live updates share one template and its escaping)."""
    try:
        page = store().list_spans(query_from_params(request.GET, default_limit=100))
    except (QueryError, BadCursor, ValueError) as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain")
    except StoreError as exc:
        return HttpResponse(f"store unavailable: {exc}", status=503, content_type="text/plain")
    return render(request, "llmflow/_rows.html", {"rows": presenters.rows(page.spans)})


@require_GET
def trace(request: HttpRequest, trace_id: str) -> HttpResponse:
    if not TRACE_ID_RE.match(trace_id):
        raise Http404("no such trace")
    spans = store().get_trace(trace_id)
    if not spans:
        raise Http404("no such trace")
    bars, total_ms = presenters.waterfall(spans)
    selected = request.GET.get("span") or bars[0].span.span_id
    return render(request, "llmflow/trace.html", {
        "trace_id": trace_id,
        "bars": bars,
        "total_ms": total_ms,
        "selected": selected,
        "details": [(bar.span, presenters.pretty_json(bar.span.to_json()),
                     presenters.conversation(bar.span)) for bar in bars],
        # each call once: an SDK span and the proxy's span of one call are one cost
        "total_cost": presenters.fmt_cost(sum(
            s.attributes.get("estimated_cost") or 0 for s in otlp.counted(spans))),
    })
