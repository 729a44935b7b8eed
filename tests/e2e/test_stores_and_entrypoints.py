"""The same program on MongoDB, and the addon as a plain ``mitmdump -s`` script."""

from __future__ import annotations

import sqlite3
import time
import uuid

import openai
import pytest

from tests.conftest import mongo_uri
from tests.e2e.conftest import start_stack
from tests.support.mock_upstream import REPLY_TEXT
from tests.support.processes import RUNTIME_PYTHON, free_port, llmflow_env, spawn

pytestmark = pytest.mark.e2e


def test_proxy_and_dashboard_on_mongodb(tmp_path, mongo_server, upstream):
    database = f"e2e{uuid.uuid4().hex[:8]}"
    stack = start_stack(tmp_path, upstream, MONGO_URI=mongo_uri(mongo_server, database))
    try:
        sdk = openai.OpenAI(base_url=stack.proxy.url + "/v1", api_key="sk-test", max_retries=0)
        reply = sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        streamed = "".join(c.choices[0].delta.content or "" for c in sdk.chat.completions.create(
            model="gpt-4o-mini", stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "hi"}]) if c.choices)
        assert reply.choices[0].message.content == streamed == REPLY_TEXT
        spans = stack.wait_for_spans(2)
        assert {s["attributes"]["stream"] for s in spans} == {True, False}
        assert all(s["attributes"]["completion_tokens"] == 10 for s in spans)
        assert stack.api("/healthz")["store"] == "mongo"
        trace = stack.api(f"/api/traces/{spans[0]['traceId']}")
        assert trace["spans"][0]["spanId"] == spans[0]["spanId"]
        assert not (stack.data_dir / "llmflow.sqlite3").exists()  # nothing went to SQLite
    finally:
        stack.proxy.stop()
        stack.dashboard.stop()


def test_addon_runs_as_a_plain_mitmdump_script(tmp_path, upstream):
    port = free_port()
    mitmdump = RUNTIME_PYTHON.parent / "mitmdump"
    data = tmp_path / "data"
    proxy = spawn("mitmdump", [str(mitmdump), "--mode", f"reverse:{upstream.url}@127.0.0.1:{port}",
                               "--set", "connection_strategy=lazy", "-q", "-s", "addon/llmflow.py"],
                  port, tmp_path, llmflow_env(data, UPSTREAM_OPENAI=upstream.url))
    try:
        sdk = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-test", max_retries=0)
        reply = sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content == REPLY_TEXT
    finally:
        assert proxy.stop() == 0  # SIGTERM: clean shutdown, queue drained
    with sqlite3.connect(data / "llmflow.sqlite3") as db:
        rows = db.execute("SELECT model, status, total_tokens FROM spans").fetchall()
    assert rows == [("gpt-4o-mini-2024-07-18", "success", reply.usage.total_tokens)]


def test_sigterm_drains_spans_in_flight(tmp_path, upstream):
    """Calls finished just before SIGTERM are written before the proxy exits."""
    from tests.support.processes import start_proxy

    data = tmp_path / "data"
    proxy = start_proxy(data, tmp_path, UPSTREAM_OPENAI=upstream.url)
    sdk = openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-test", max_retries=0)
    for _ in range(20):
        sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    started = time.monotonic()
    assert proxy.stop() == 0
    assert time.monotonic() - started < 10
    with sqlite3.connect(data / "llmflow.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM spans").fetchone()[0] == 20
