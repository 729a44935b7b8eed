"""Analytics data, the analytics page, exports and the extended filters, on both store doubles."""

import csv
import io
import json
from datetime import timedelta

from tests.support.factories import T0, make_span


def seed(data):
    spans = []
    for i in range(30):
        spans.append(make_span(start=T0 + timedelta(minutes=2 * i), duration_ms=100.0 + i, ttft_ms=20.0,
                               model="gpt-4o-mini" if i % 3 else "claude-3-5-haiku",
                               provider="openai" if i % 3 else "anthropic",
                               status="error" if i % 10 == 0 else "success", cost=0.01,
                               user_id=f"user-{i % 4}", feature="chat" if i % 2 else "search",
                               prompt=f"question number {i}"))
    data.write_batch(spans)
    return spans


def test_analytics_json(logged_in, data):
    seed(data)
    got = logged_in.get("/api/analytics", {"since": T0.isoformat(), "until": (T0 + timedelta(hours=1)).isoformat()}).json()
    assert got["bucket"] == "minute"
    assert got["totals"]["requests"] == 30 and got["totals"]["errors"] == 3
    assert got["totals"]["error_rate"] == 0.1
    assert round(got["totals"]["cost"], 6) == 0.3
    assert 75 < got["totals"]["p50"] < 150 and got["totals"]["p95"] >= got["totals"]["p50"]
    assert sum(p["requests"] for p in got["series"]) == 30
    assert got["series"][0]["ttft_p50"] is not None
    assert {m["name"] for m in got["cost_by_model"]} == {"gpt-4o-mini", "claude-3-5-haiku"}
    assert [u["name"] for u in got["top_users"]][:1] in (["user-0"], ["user-1"], ["user-2"])
    assert {f["name"] for f in got["top_features"]} == {"chat", "search"}
    hourly = logged_in.get("/api/analytics", {"since": T0.isoformat(), "until": (T0 + timedelta(hours=1)).isoformat(),
                                              "bucket": "hour", "model": "claude-3-5-haiku"}).json()
    assert [p["requests"] for p in hourly["series"]] == [10]
    assert logged_in.get("/api/analytics", {"bucket": "week"}).status_code == 400


def test_analytics_default_range_is_the_last_day(logged_in, data):
    got = logged_in.get("/api/analytics").json()
    assert got["bucket"] == "hour" and got["series"] == [] and got["totals"]["requests"] == 0
    assert got["totals"]["p50"] is None


def test_analytics_page(logged_in, data):
    html = logged_in.get("/analytics?range=7d&model=x").content.decode()
    assert 'data-source="/api/analytics?range=7d&amp;model=x"' in html
    assert "vendor/chart.umd.min.js" in html and "<script>" not in html.replace("<script src", "")
    assert logged_in.get("/analytics?range=banana").status_code == 400


def test_csv_export_streams_the_filtered_view(logged_in, data):
    seed(data)
    data.write_batch([make_span(start=T0, prompt="=HYPERLINK(\"http://evil\")", user_id="=cmd|' /C calc'!A0")])
    response = logged_in.get("/api/export.csv", {"model": "gpt-4o-mini"})
    assert response.streaming and response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="llmflow-spans-')
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 21  # 20 seeded + the formula one (also gpt-4o-mini)
    assert {r["model"] for r in rows} == {"gpt-4o-mini"}
    assert rows[0]["startTime"] >= rows[-1]["startTime"]
    evil = [r for r in rows if "cmd" in r["user_id"]][0]
    assert evil["user_id"].startswith("'=")  # not a live formula in a spreadsheet


def test_jsonl_export(logged_in, data):
    spans = seed(data)
    response = logged_in.get("/api/export.jsonl", {"status": "error"})
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert len(lines) == 3
    docs = [json.loads(line) for line in lines]
    assert {d["spanId"] for d in docs} == {s.span_id for s in spans if s.status.value == "error"}
    assert docs[0]["request"]["messages"][0]["content"].startswith("question number")
    assert logged_in.get("/api/export.jsonl", {"status": "nope"}).status_code == 400


def test_export_needs_login(data):
    from django.test import Client

    assert Client().get("/api/export.csv").status_code == 401


def test_search_and_attribute_filters_on_the_list(logged_in, data):
    seed(data)
    html = logged_in.get("/", {"q": "number 7"}).content.decode()
    assert "question number 7" in html and "question number 8" not in html
    html = logged_in.get("/", {"user_id": "user-3", "feature": "chat"}).content.decode()
    assert html.count("<tr class=") == 7  # i % 4 == 3 (3, 7, ... 27): all odd, so all chat
    api = logged_in.get("/api/spans", {"attr": "user_id:user-1", "limit": 100}).json()
    assert len(api["spans"]) == 8
    assert logged_in.get("/api/spans", {"attr": "no-colon"}).status_code == 400
    assert logged_in.get("/api/spans", {"attr": "bad key:1"}).status_code == 400
    html = logged_in.get("/", {"range": "24h", "min_cost": "0.005"}).content.decode()
    assert 'value="0.005"' in html


def test_filter_suggestions(logged_in, data):
    seed(data)
    html = logged_in.get("/").content.decode()
    assert '<option value="claude-3-5-haiku">' in html and '<datalist id="features">' in html
