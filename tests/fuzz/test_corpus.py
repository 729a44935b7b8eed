"""Regression: every input in ``tests/fuzz/corpus/`` (each found a bug, or is one of the nastiest
seeds), replayed against the component it broke, with the fuzz suite's own checks.

Plain parametrized tests, no hypothesis: they run the same way every time.
"""

from __future__ import annotations

import gzip
import time
import tracemalloc

import pytest

from llmflow_core.capture import CaptureOptions, build_span
from llmflow_core.exchange import Exchange
from llmflow_core.providers.base import loads
from llmflow_core.store.sqlite import SQLiteStore
from tests.fuzz import corpus
from tests.fuzz import strategies as fz
from tests.fuzz.stats import tally
from tests.fuzz.test_capture import check_storable, overhead
from tests.fuzz.test_otlp import ALLOWED, check_decode, make_store, serving
from tests.fuzz.test_providers import run

CASES = corpus.cases()


def test_corpus_is_not_empty():
    assert len(CASES) >= 10
    assert {corpus.load(path)["target"] for path in CASES} == set(corpus.TARGETS)


@pytest.fixture
def sqlite(tmp_path):
    store = SQLiteStore(tmp_path / "spans.sqlite3")
    yield store
    store.close()


@pytest.mark.parametrize("path", CASES, ids=lambda path: path.stem)
def test_corpus_case(path, sqlite, tmp_path):
    case = corpus.load(path)
    given = case["input"]
    target = case["target"]
    if target == "parser":
        request_json = loads(given["request"]) if given["request"] else None
        routes = fz.ROUTES if given["route"] == "*" else [given["route"]]  # "*": a seed, for all
        if given["path"] != "*":
            run(routes[0], given["path"], request_json, given["response"], given["status"], given["streamed"])
        for route in routes:
            for endpoint in fz.ENDPOINTS[route]:  # and every endpoint of the route
                for streamed in (False, True):
                    run(route, endpoint, request_json, given["response"], given["status"], streamed)
    elif target == "build_span":
        fields = dict(given["exchange"])
        for key in ("request_headers", "response_headers", "trace_headers", "chunk_times"):
            fields[key] = [tuple(pair) for pair in fields[key]]
        exchange = Exchange(**fields)
        options = CaptureOptions(max_body_size=given["limit"])
        started = time.perf_counter()
        span = build_span(exchange, options)
        seconds = time.perf_counter() - started
        assert seconds < given.get("max_seconds", 30), f"build_span took {seconds:.1f}s"
        if "max_peak_mb" in given:  # (tracemalloc slows everything down: only when asked)
            tracemalloc.start()
            try:
                build_span(exchange, options)
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert peak < given["max_peak_mb"] * 2**20, f"build_span peaked at {peak / 2**20:.0f} MB"
        text = check_storable(span, sqlite)
        for secret in given["secrets"]:
            assert secret not in text
        if given["limit"]:
            assert len(text) <= 8 * given["limit"] + overhead(exchange) + 16384
    elif target == "otlp_decode":
        check_decode(given["body"], given["content_type"], sqlite)
    else:  # otlp_receiver, on both store doubles
        body, encoding = given["body"], given.get("encoding")
        wire = gzip.compress(body) if encoding == "gzip" else body
        headers = {"HTTP_CONTENT_ENCODING": encoding} if encoding else {}
        for kind in ("sqlite", "mongomock"):
            with serving(make_store(kind, tmp_path / kind)) as client:
                response = client.generic("POST", "/v1/traces", wire, content_type=given["content_type"],
                                          **headers)
            assert response.status_code in ALLOWED, (kind, response.status_code, response.content[:300])
    tally("corpus: regression replays", 1, path.stat().st_size)
