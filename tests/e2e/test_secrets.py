"""No secret ever reaches storage, a log, an export or a page: calls are made with canary keys in
every place a credential travels, then everything LLMFlow wrote is searched for them."""

from __future__ import annotations

import uuid

import anthropic
import openai
import pytest
import requests

from tests.e2e.conftest import AUTH, start_stack
from tests.support.mock_upstream import MockUpstream

pytestmark = pytest.mark.e2e


def test_canary_keys_never_leave_the_call(tmp_path):
    canary = "canary" + uuid.uuid4().hex  # one marker inside every secret below
    upstream = MockUpstream().start()
    stack = start_stack(tmp_path, upstream, UPSTREAM_ANTHROPIC=upstream.url, UPSTREAM_GEMINI=upstream.url)
    try:
        proxy = stack.proxy.url
        oa = openai.OpenAI(base_url=proxy + "/v1", api_key=f"sk-{canary}", max_retries=0,
                           default_headers={"OpenAI-Organization": f"org-{canary}", "Cookie": f"session={canary}"})
        oa.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        list(oa.chat.completions.create(model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "hi"}]))
        with pytest.raises(openai.BadRequestError):
            oa.chat.completions.create(model="gpt-4o-mini-error-400", messages=[{"role": "user", "content": "x"}])
        anthropic.Anthropic(base_url=proxy, api_key=f"sk-ant-{canary}", max_retries=0).messages.create(
            model="claude-3-5-haiku-latest", max_tokens=32, messages=[{"role": "user", "content": "hi"}])
        body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
        requests.post(f"{proxy}/v1beta/models/gemini-2.0-flash:generateContent?key=AIza{canary}", json=body,
                      timeout=10).raise_for_status()
        requests.post(f"{proxy}/v1beta/models/gemini-2.0-flash:generateContent", json=body,
                      headers={"x-goog-api-key": f"AIza{canary}", "x-api-key": canary, "api-key": canary,
                               "Proxy-Authorization": f"Basic {canary}"}, timeout=10).raise_for_status()
        assert upstream.requests and any(canary in str(r.headers) for r in upstream.requests)  # keys did travel
        spans = stack.wait_for_spans(6)

        seen: dict[str, str] = {}
        session = requests.Session()
        session.auth = AUTH
        for path in ["/api/spans?limit=100", "/api/export.csv", "/api/export.jsonl", "/api/analytics",
                     *[f"/api/traces/{s['traceId']}" for s in spans],
                     *[f"/api/traces/{s['traceId']}/otlp" for s in spans]]:
            seen[path] = session.get(stack.dashboard.url + path, timeout=10).text
        page = requests.Session()
        token = page.get(stack.dashboard.url + "/login").cookies["csrftoken"]
        page.post(stack.dashboard.url + "/login", data={"username": "llmflow", "password": "password",
                                                         "csrfmiddlewaretoken": token})
        for s in spans:
            seen[f"page {s['traceId']}"] = page.get(f"{stack.dashboard.url}/traces/{s['traceId']}", timeout=10).text
        seen["list page"] = page.get(stack.dashboard.url + "/", timeout=10).text
    finally:
        stack.proxy.stop()
        stack.dashboard.stop()
        upstream.stop()
    seen["proxy log"] = stack.proxy.log()
    seen["dashboard log"] = stack.dashboard.log()
    for path in stack.data_dir.rglob("*"):
        if path.is_file():
            seen[str(path)] = path.read_bytes().decode("latin-1")
    assert len([k for k in seen if k.endswith(".sqlite3")]) == 1
    leaks = [where for where, text in seen.items() if canary in text]
    assert leaks == [], f"the canary leaked into: {leaks}"
    assert "[redacted]" in seen["/api/spans?limit=100"]
