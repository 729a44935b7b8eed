"""The real Traceloop SDK (OpenLLMetry) exporting to a running LLMFlow, and calling OpenAI through
the proxy: one joined trace, workflow -> task -> the SDK's openai.chat span -> the proxy's span.

The SDK sets global OpenTelemetry state (tracer provider, instrumentation patches), so it runs
in a subprocess of the test virtualenv's Python, never in the pytest process. Everything stays
on loopback: the SDK's own telemetry is off and its only endpoint is the dashboard under test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from llmflow_core import otlp
from llmflow_core.spans import Span
from tests.e2e.conftest import Stack, start_stack
from tests.support.mock_upstream import REPLY_TEXT, MockUpstream

pytestmark = pytest.mark.e2e
TOKEN = "ingest-" + uuid.uuid4().hex
EXPORT_ERRORS = ("Failed to export", "Exception while exporting", "Transient error", "Traceback",
                 "exceeded", "ConnectionError", "Max retries")

APP = textwrap.dedent('''
    import json, logging, os, sys

    from openai import OpenAI
    from traceloop.sdk import Traceloop
    from traceloop.sdk.decorators import task, workflow
    from traceloop.sdk.instruments import Instruments

    # TRACELOOP_BASE_URL (the dashboard) and TRACELOOP_API_KEY (the ingest token) come from the
    # environment. ONLY_OPENAI: instrument just OpenAI (the default instruments ~30 libraries,
    # which takes seconds).
    only_openai = {Instruments.OPENAI} if os.environ.get("ONLY_OPENAI") else None
    Traceloop.init(app_name="joke-app", disable_batch=True, instruments=only_openai)
    # Whatever the SDK logs (its exporters report failures through logging) goes to stderr.
    logging.getLogger().addHandler(logging.StreamHandler(sys.stderr))
    client = OpenAI(base_url=os.environ["PROXY_URL"] + "/v1", api_key="sk-e2e-" + "0" * 24,
                    max_retries=0, timeout=20)

    @task(name="ask")
    def ask(topic):
        reply = client.chat.completions.create(
            model="gpt-4o-mini", temperature=0.2, max_tokens=40,
            messages=[{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": f"Tell me a joke about {topic}"}])
        return reply.choices[0].message.content

    @workflow(name="jokes")
    def jokes(topic):
        Traceloop.set_association_properties({"user_id": "user-42", "session_id": "sess-7",
                                              "run": os.environ["RUN_MARKER"]})
        return ask(topic)

    print(json.dumps({"answer": jokes("owls")}))
''')


@pytest.fixture(scope="module")
def llmflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Proxy + dashboard with an ingest token, the proxy's OpenAI upstream a local mock."""
    upstream = MockUpstream().start()
    # gunicorn's access log shows which OTLP endpoints the SDK used, and what they answered.
    stack = start_stack(tmp_path_factory.mktemp("traceloop"), upstream, OTLP_INGEST_TOKEN=TOKEN,
                        GUNICORN_CMD_ARGS="--access-logfile -")
    yield stack
    stack.proxy.stop()
    stack.dashboard.stop()
    upstream.stop()


def run_app(stack: Stack, tmp: Path, marker: str, **env: str) -> subprocess.CompletedProcess:
    script = tmp / "joke_app.py"
    script.write_text(APP)
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(("OTEL_", "TRACELOOP_", "OPENAI_"))}
    environment.update({
        "TRACELOOP_BASE_URL": stack.dashboard.url,
        "TRACELOOP_API_KEY": TOKEN,  # the SDK sends it as Authorization: Bearer <key>
        "TRACELOOP_TELEMETRY": "false",  # no calls home
        "OTEL_METRIC_EXPORT_INTERVAL": "500",  # metrics reach /v1/metrics during the run too
        "PROXY_URL": stack.proxy.url,
        "RUN_MARKER": marker,
        "PYTHONUNBUFFERED": "1",
    })
    environment.update(env)
    return subprocess.run([sys.executable, str(script)], cwd=tmp, env=environment, capture_output=True,
                          text=True, timeout=120)


def export_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if any(word in line for word in EXPORT_ERRORS)]


def wait_for_trace(stack: Stack, marker: str, count: int, timeout: float = 15.0) -> list[dict]:
    workflow = stack.span_where(lambda s: (s["attributes"].get("custom") or {}).get("run") == marker
                                and s["operation"] == "jokes.workflow", timeout)
    deadline = time.monotonic() + timeout
    spans: list[dict] = []
    while time.monotonic() < deadline:
        spans = stack.api(f"/api/traces/{workflow['traceId']}")["spans"]
        if len(spans) >= count:
            return spans
        time.sleep(0.1)
    raise AssertionError(f"trace has {len(spans)} span(s), expected {count}: "
                         f"{[s['operation'] for s in spans]}\n{stack.dashboard.log()}")


def test_workflow_task_sdk_span_and_proxy_span_are_one_trace(llmflow, tmp_path):
    marker = uuid.uuid4().hex
    log_before = len(llmflow.dashboard.log())
    app = run_app(llmflow, tmp_path, marker)
    assert app.returncode == 0, app.stderr
    assert json.loads(app.stdout.strip().splitlines()[-1]) == {"answer": REPLY_TEXT}
    assert export_errors(app.stderr) == [], app.stderr
    access = [line for line in llmflow.dashboard.log()[log_before:].splitlines() if '"POST /v1/' in line]
    assert any('"POST /v1/traces HTTP/1.1" 200' in line for line in access), access
    assert any('"POST /v1/metrics HTTP/1.1" 200' in line for line in access), access  # token counts
    assert not [line for line in access if '" 200 ' not in line], access

    spans = wait_for_trace(llmflow, marker, 4)
    by_operation = {s["operation"]: s for s in spans}
    assert sorted(by_operation) == ["ask.task", "chat.completions.create", "jokes.workflow", "openai.chat"]
    workflow, task = by_operation["jokes.workflow"], by_operation["ask.task"]
    sdk, proxy = by_operation["openai.chat"], by_operation["chat.completions.create"]

    # One trace, linked workflow -> task -> SDK span -> proxy span.
    assert len({s["traceId"] for s in spans}) == 1
    assert workflow["parentSpanId"] is None
    assert task["parentSpanId"] == workflow["spanId"]
    assert sdk["parentSpanId"] == task["spanId"]
    assert proxy["parentSpanId"] == sdk["spanId"]  # the proxy honoured the SDK's traceparent

    # Kinds, sources, services and names as sent.
    assert [(s["kind"], s["source"], s["service"]) for s in (workflow, task, sdk)] == [
        ("workflow", "otlp", "joke-app"), ("task", "otlp", "joke-app"), ("llm", "otlp", "joke-app")]
    assert (proxy["kind"], proxy["source"]) == ("llm", "proxy")
    assert all(s["status"] == "success" for s in spans)
    assert workflow["attributes"]["otel"]["attributes"]["traceloop.entity.name"] == "jokes"
    assert workflow["response"]["body"] == REPLY_TEXT
    for span in (workflow, task, sdk):
        assert (span["attributes"]["user_id"], span["attributes"]["session_id"]) == ("user-42", "sess-7")

    # The SDK's LLM span shows what the proxy's shows.
    a, b = sdk["attributes"], proxy["attributes"]
    for key in ("provider", "model", "request_model", "response_model", "prompt_tokens",
                "completion_tokens", "total_tokens", "estimated_cost", "temperature", "max_tokens",
                "finish_reason", "stream"):
        assert a.get(key) == b.get(key), key
    assert a["model"] == "gpt-4o-mini-2024-07-18" and a["estimated_cost"] > 0
    assert sdk["request"]["messages"] == proxy["request"]["messages"]
    assert sdk["response"]["output"]["text"] == proxy["response"]["output"]["text"] == REPLY_TEXT
    assert sdk["startTime"] <= proxy["startTime"] and proxy["endTime"] <= sdk["endTime"]

    # The same call seen twice: one pair, counted once, whichever record was stored first.
    stored = [Span.from_document(s) for s in spans]
    assert otlp.duplicate_pairs(stored) == {sdk["spanId"]: proxy["spanId"], proxy["spanId"]: sdk["spanId"]}
    # Usually the proxy's record lands first (the SDK exports at exit) and the SDK's is marked, but
    # on a busy machine the recorder can be behind the SDK's export: then the proxy's is marked.
    # Two writes at the same instant may each miss the other: then neither is, and the proxy's counts.
    marked = [s for s in (sdk, proxy) if s["attributes"].get("duplicate_of")]
    assert len(marked) <= 1, (a.get("duplicate_of"), b.get("duplicate_of"))
    kept = proxy if not marked or marked[0] is sdk else sdk
    if marked:
        assert marked[0]["attributes"]["duplicate_of"] == kept["spanId"]
    counted = otlp.counted(stored)
    assert [s.span_id for s in counted if s.kind == "llm"] == [kept["spanId"]]

    # The export carries the current names and reads back as the same spans.
    exported = llmflow.api(f"/api/traces/{workflow['traceId']}/otlp")
    spans_out = [s for r in exported["resourceSpans"] for ss in r["scopeSpans"] for s in ss["spans"]]
    sdk_out = next(s for s in spans_out if s["spanId"] == sdk["spanId"])
    keys = {attr["key"] for attr in sdk_out["attributes"]}
    assert {"gen_ai.provider.name", "gen_ai.request.model", "gen_ai.usage.input_tokens",
            "gen_ai.input.messages", "gen_ai.output.messages"} <= keys
    again = otlp.decode_request(json.dumps(exported).encode(), "application/json")
    assert sorted(again, key=lambda s: s.span_id) == sorted(stored, key=lambda s: s.span_id)


def test_gzip_exports_are_accepted(llmflow, tmp_path):
    marker = uuid.uuid4().hex
    app = run_app(llmflow, tmp_path, marker, OTEL_EXPORTER_OTLP_COMPRESSION="gzip", ONLY_OPENAI="1")
    assert app.returncode == 0 and export_errors(app.stderr) == [], app.stderr
    assert len(wait_for_trace(llmflow, marker, 4)) == 4


def test_a_wrong_token_is_refused_and_the_sdk_says_so(llmflow, tmp_path):
    marker = uuid.uuid4().hex
    app = run_app(llmflow, tmp_path, marker, TRACELOOP_API_KEY="not-the-token", ONLY_OPENAI="1")
    assert app.returncode == 0  # the app itself is never affected
    assert any("401" in line for line in export_errors(app.stderr)), app.stderr
    time.sleep(1)
    assert not [s for s in llmflow.api("/api/spans", limit=200)["spans"]
                if (s["attributes"].get("custom") or {}).get("run") == marker]
