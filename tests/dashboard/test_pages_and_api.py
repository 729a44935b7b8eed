"""Pages and API through Django's test client, on each store's test double."""

from datetime import timedelta

from llmflow_core.spans import new_trace_id
from tests.support.factories import T0, make_span

XSS = '<script>alert(1)</script><img src=x onerror="alert(2)"><a href="javascript:alert(3)">x</a>'


def test_empty_store(logged_in):
    page = logged_in.get("/")
    assert page.status_code == 200 and b"No calls yet" in page.content
    assert logged_in.get("/api/spans").json() == {"spans": [], "next": None}


def test_trace_list_shows_calls_newest_first_with_escaping(logged_in, data):
    data.write_batch([make_span(start=T0, prompt="first question here", model="gpt-4o"),
                      make_span(start=T0 + timedelta(seconds=5), prompt=XSS, cost=None)])
    html = logged_in.get("/").content.decode()
    assert html.index("&lt;script&gt;alert(1)&lt;/script&gt;") < html.index("first question here")
    assert "<script>alert(1)" not in html and 'onerror="alert(2)"' not in html
    assert '<a href="javascript:' not in html
    assert "gpt-4o" in html and "$0.0000" in html and ">?<" in html  # unknown cost shown as ?


def test_filters_in_the_url(logged_in, data):
    data.write_batch([make_span(model="gpt-4o", prompt="alpha"), make_span(model="claude", prompt="beta",
                                                                           provider="anthropic", status="error")])
    html = logged_in.get("/?model=claude&status=error").content.decode()
    assert "beta" in html and "alpha" not in html
    assert 'value="claude"' in html
    bad = logged_in.get("/?status=weird")
    assert bad.status_code == 400 and b"status must be one of" in bad.content


def test_paging_links(logged_in, data):
    data.write_batch([make_span(start=T0 + timedelta(seconds=i), prompt=f"question {i}") for i in range(60)])
    first = logged_in.get("/").content.decode()
    assert "question 59" in first and "question 9 " not in first and "Older" in first
    api = logged_in.get("/api/spans", {"limit": 50}).json()
    second = logged_in.get("/api/spans", {"limit": 50, "cursor": api["next"]}).json()
    assert len(api["spans"]) == 50 and len(second["spans"]) == 10 and second["next"] is None
    assert logged_in.get("/api/spans", {"cursor": "zzz"}).status_code == 400
    assert logged_in.get("/api/spans", {"limit": 5000}).status_code == 400


def test_live_rows_fragment(logged_in, data):
    data.write_batch([make_span(start=T0, prompt="old one"), make_span(start=T0 + timedelta(minutes=1), prompt="new one")])
    html = logged_in.get("/traces/rows", {"since": (T0 + timedelta(seconds=30)).isoformat()}).content.decode()
    assert "new one" in html and "old one" not in html and "<tr" in html


def test_trace_page_waterfall_and_details(logged_in, data):
    trace_id = new_trace_id()
    root = make_span(trace_id=trace_id, duration_ms=1000, prompt="root", ttft_ms=120.0)
    child = make_span(trace_id=trace_id, parent=root.span_id, start=T0 + timedelta(milliseconds=200),
                      duration_ms=300, status="error", prompt=XSS, prompt_tokens=None, completion_tokens=None)
    data.write_batch([root, child])
    html = logged_in.get(f"/traces/{trace_id}").content.decode()
    assert html.count('class="wf-row') == 2
    assert 'data-offset="20.0"' in html and 'data-width="30.0"' in html  # child on the time axis
    assert 'class="wf-ttft" data-offset="12.0"' in html
    assert 'data-depth="1"' in html
    assert "&lt;script&gt;" in html and "<script>alert" not in html
    assert "server_error" in html and "boom" in html
    assert logged_in.get("/traces/" + "f" * 32).status_code == 404
    assert logged_in.get("/traces/not-an-id").status_code == 404


def test_huge_payloads_render(logged_in, data):
    span = make_span(prompt="x" * 500_000, answer="y" * 200_000)
    data.write_batch([span])
    response = logged_in.get(f"/traces/{span.trace_id}")
    assert response.status_code == 200 and len(response.content) > 700_000


def test_api_span_and_trace(logged_in, data):
    span = make_span()
    data.write_batch([span])
    assert logged_in.get(f"/api/spans/{span.span_id}").json()["spanId"] == span.span_id
    trace = logged_in.get(f"/api/traces/{span.trace_id}").json()
    assert trace["traceId"] == span.trace_id and trace["spans"][0]["startTime"].endswith("Z")
    assert logged_in.get("/api/traces/xyz").status_code == 400
    assert logged_in.get("/api/traces/" + "0" * 32).status_code == 404
    assert logged_in.get("/api/spans/0000000000000000").status_code == 404


def test_api_filters(logged_in, data):
    data.write_batch([make_span(start=T0, model="a"), make_span(start=T0 + timedelta(hours=1), model="b")])
    got = logged_in.get("/api/spans", {"since": (T0 + timedelta(minutes=1)).isoformat()}).json()
    assert [s["attributes"]["model"] for s in got["spans"]] == ["b"]
    assert logged_in.get("/api/spans", {"model": "a"}).json()["spans"][0]["attributes"]["model"] == "a"
    assert logged_in.get("/api/spans", {"since": "yesterday-ish"}).status_code == 400
    assert logged_in.get("/api/spans", {"min_tokens": "many"}).status_code == 400


def test_store_outage_is_a_clear_error(logged_in, data, monkeypatch):
    from llmflow_core.store import StoreError

    def down(*args, **kwargs):
        raise StoreError("connection refused")

    monkeypatch.setattr(data, "list_spans", down)
    monkeypatch.setattr(data, "ping", down)
    assert logged_in.get("/api/spans").status_code == 503
    page = logged_in.get("/")
    assert page.status_code == 503 and b"The store is not answering" in page.content
    from django.test import Client
    assert Client().get("/healthz").status_code == 503
