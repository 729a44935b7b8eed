"""Ingest rate of the OTLP/HTTP receiver: POST /v1/traces on SQLite, batches of 512 spans.

    .venv-test/bin/python -m bench.otlp_ingest --batches 40

Starts the real dashboard (gunicorn, as `make run` does; 1 worker, 4 threads) on loopback with a
fresh SQLite store, builds the requests first (protobuf ExportTraceServiceRequests as the
Traceloop SDK's exporter sends them: traces of a workflow, a task, an OpenAI chat span with
legacy OpenLLMetry attributes and a tool span, all new ids), then posts them one after
another (``--clients`` > 1: that many at once) and prints spans/s. Bounded: at most 1000
batches, every request times out after 60 s, only 127.0.0.1 is ever contacted. Writes
bench/results/otlp_ingest.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue  # noqa: E402
from opentelemetry.proto.resource.v1.resource_pb2 import Resource  # noqa: E402
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span  # noqa: E402

from llmflow_core.store.sqlite import SQLiteStore  # noqa: E402
from tests.support.processes import start_dashboard  # noqa: E402

RESULTS = ROOT / "bench" / "results"
BATCH = 512
MAX_BATCHES = 1000


def kv(key: str, value) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def llm_attributes(n: int) -> list[KeyValue]:
    return [kv(k, v) for k, v in {
        "llm.request.type": "chat", "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.request.temperature": 0.2, "gen_ai.request.max_tokens": 200, "llm.is_streaming": False,
        "gen_ai.openai.api_base": "http://127.0.0.1:8080/v1/",
        "gen_ai.prompt.0.role": "system", "gen_ai.prompt.0.content": "You are a helpful assistant.",
        "gen_ai.prompt.1.role": "user",
        "gen_ai.prompt.1.content": f"Summarise ticket #{n}: the customer cannot log in after the update " * 4,
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18", "gen_ai.response.id": f"chatcmpl-{n}",
        "llm.usage.total_tokens": 190, "gen_ai.usage.prompt_tokens": 130,
        "gen_ai.usage.completion_tokens": 60,
        "gen_ai.completion.0.finish_reason": "stop", "gen_ai.completion.0.role": "assistant",
        "gen_ai.completion.0.content": "The customer is locked out since the update; reset the session. " * 3,
        "traceloop.workflow.name": "support", "traceloop.association.properties.user_id": f"user-{n % 97}",
    }.items()]


def batch(first: int, now_ns: int) -> bytes:
    """512 spans: 128 traces of workflow -> task -> openai.chat, + a tool span."""
    spans = []
    for t in range(BATCH // 4):
        n = first + t
        trace = os.urandom(16)
        ids = [os.urandom(8) for _ in range(4)]
        start = now_ns + n * 1_000_000
        common = [kv("traceloop.workflow.name", "support")]
        spans.append(Span(trace_id=trace, span_id=ids[0], name="support.workflow", kind=1,
                          start_time_unix_nano=start, end_time_unix_nano=start + 900_000_000,
                          attributes=common + [kv("traceloop.span.kind", "workflow"),
                                               kv("traceloop.entity.input", json.dumps({"ticket": n}))]))
        spans.append(Span(trace_id=trace, span_id=ids[1], parent_span_id=ids[0], name="summarise.task",
                          kind=1,
                          start_time_unix_nano=start + 1_000_000, end_time_unix_nano=start + 850_000_000,
                          attributes=common + [kv("traceloop.span.kind", "task")]))
        spans.append(Span(trace_id=trace, span_id=ids[2], parent_span_id=ids[1], name="openai.chat", kind=3,
                          start_time_unix_nano=start + 2_000_000, end_time_unix_nano=start + 800_000_000,
                          attributes=llm_attributes(n)))
        spans.append(Span(trace_id=trace, span_id=ids[3], parent_span_id=ids[1], name="lookup.tool", kind=1,
                          start_time_unix_nano=start + 810_000_000, end_time_unix_nano=start + 840_000_000,
                          attributes=common + [kv("traceloop.span.kind", "tool")]))
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=Resource(attributes=[kv("service.name", "support-bot")]),
        scope_spans=[ScopeSpans(scope=InstrumentationScope(name="traceloop.sdk"), spans=spans)])])
    return request.SerializeToString()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40,
                        help=f"batches of {BATCH} spans (max {MAX_BATCHES})")
    parser.add_argument("--clients", type=int, default=1, help="concurrent exporters (1-8)")
    parser.add_argument("--gzip", action="store_true", help="send Content-Encoding: gzip")
    args = parser.parse_args()
    batches = max(1, min(args.batches, MAX_BATCHES))
    clients = max(1, min(args.clients, 8))

    now_ns = time.time_ns()
    bodies = [batch(i * BATCH // 4, now_ns) for i in range(batches + 1)]  # +1 warm-up
    if args.gzip:
        bodies = [gzip.compress(b, 6) for b in bodies]
    headers = {"Content-Type": "application/x-protobuf"}
    if args.gzip:
        headers["Content-Encoding"] = "gzip"
    print(f"{batches} batches of {BATCH} spans, {statistics.mean(map(len, bodies)) / 1024:.0f} KiB each "
          f"({'gzip' if args.gzip else 'identity'}), {clients} client(s)")

    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="llmflow-otlp-bench-") as tmp:
        data = Path(tmp) / "data"
        dashboard = start_dashboard(data, Path(tmp), LOG_LEVEL="WARNING")
        try:
            url = dashboard.url + "/v1/traces"
            local = threading.local()

            def post(body: bytes) -> float:
                session = getattr(local, "session", None)
                if session is None:  # one keep-alive connection per client thread
                    session = local.session = requests.Session()
                started = time.perf_counter()
                response = session.post(url, data=body, headers=headers, timeout=60)
                elapsed = time.perf_counter() - started
                if response.status_code != 200 or response.content:
                    raise SystemExit(f"unexpected answer {response.status_code}: {response.content[:200]!r}")
                return elapsed

            post(bodies[0])  # warm-up: imports, first SQLite connection
            started = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                latencies = list(pool.map(post, bodies[1:]))
            wall = time.perf_counter() - started
        finally:
            dashboard.stop()
        stored = SQLiteStore(data / "llmflow.sqlite3")
        count = stored.stats().spans
        stored.close()
    expected = (batches + 1) * BATCH
    if count != expected:
        print(f"stored {count} spans, expected {expected}")
        return 1
    rate = batches * BATCH / wall
    latencies.sort()
    result = {"batches": batches, "batch_size": BATCH, "clients": clients, "gzip": args.gzip,
              "spans_per_second": round(rate), "wall_seconds": round(wall, 2),
              "batch_p50_ms": round(statistics.median(latencies) * 1000, 1),
              "batch_p95_ms": round(latencies[max(0, int(len(latencies) * 0.95) - 1)] * 1000, 1),
              "cpus": os.cpu_count(), "when": datetime.now(timezone.utc).isoformat()}
    print(f"{rate:,.0f} spans/s  ({wall:.2f} s for {batches * BATCH} spans; per batch p50 "
          f"{result['batch_p50_ms']} ms, p95 {result['batch_p95_ms']} ms)")
    (RESULTS / "otlp_ingest.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
