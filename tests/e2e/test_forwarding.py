"""OTEL_EXPORTER_OTLP_ENDPOINT: the proxy also sends its spans to another collector, and a dead
collector changes nothing for the calls or for LLMFlow's own copy."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest

from tests.support.processes import free_port, start_proxy

pytestmark = pytest.mark.e2e


def attributes(span: dict) -> dict:
    return {a["key"]: next(iter(a["value"].values())) for a in span.get("attributes", [])}


def test_spans_are_forwarded_to_a_collector(tmp_path, upstream):
    received: list[dict] = []

    class Collector(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            assert self.path == "/v1/traces"
            received.append({"headers": {k.lower(): v for k, v in self.headers.items()}, "body": json.loads(self.rfile.read(
                int(self.headers["content-length"])))})
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    collector = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    proxy = start_proxy(tmp_path / "data", tmp_path, UPSTREAM_OPENAI=upstream.url,
                        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.server_address[1]}",
                        OTEL_EXPORTER_OTLP_HEADERS="x-tenant=llmflow-test")
    try:
        sdk = openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-forward", max_retries=0)
        sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        deadline = time.monotonic() + 15
        while not received and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        proxy.stop()
        collector.shutdown()
    assert received and received[0]["headers"]["x-tenant"] == "llmflow-test"
    span = received[0]["body"]["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    attrs = attributes(span)
    assert attrs["gen_ai.request.model"] == "gpt-4o-mini" and attrs["gen_ai.provider.name"] == "openai"
    assert int(attrs["gen_ai.usage.output_tokens"]) == 10
    assert "sk-forward" not in json.dumps(received)


def test_a_dead_collector_changes_nothing(tmp_path, upstream):
    data = tmp_path / "data"
    proxy = start_proxy(data, tmp_path, UPSTREAM_OPENAI=upstream.url,
                        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{free_port()}")
    try:
        sdk = openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-forward", max_retries=0)
        for _ in range(5):
            started = time.perf_counter()
            sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
            assert time.perf_counter() - started < 2
    finally:
        assert proxy.stop() == 0
    with sqlite3.connect(data / "llmflow.sqlite3") as conn:
        assert conn.execute("SELECT COUNT(*) FROM spans").fetchone()[0] == 5
    assert "could not forward" in proxy.log()
