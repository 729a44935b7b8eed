"""Fuzz: the OTLP decoder and the ``/v1/traces`` receiver, protobuf and OTLP/JSON.

Valid ExportTraceServiceRequests are built with the opentelemetry-proto classes (random ids,
times, kinds, statuses, events, links, and attributes under the names the mapping reads, with
values of any type: JSON strings of messages, int64 extremes, NaN, nested arrays/kvlists,
bytes), then broken: protobuf bytes mutated; OTLP/JSON documents given wrong types, then their
bytes mutated; or plain random bytes.

Properties:
- ``otlp.decode_request`` raises nothing but ``OTLPError``; every span it returns is valid,
  strict JSON, and round-trips through a real SQLiteStore (and is BSON-encodable);
- through Django's test client, ``/v1/traces`` answers 200, 400, 413 or 415, never 500,
  whatever the body, content type and Content-Encoding (gzip, corrupt gzip, gzip bombs).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import gzip
import json
from pathlib import Path
from typing import Iterator

import pytest
from django.conf import settings
from django.test import Client
from google.protobuf import json_format
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span as PbSpan, Status

from llmflow_core import otlp
from llmflow_core.spans import Span, new_span_id
from llmflow_core.store.sqlite import SQLiteStore
from llmflow_dashboard import repository
from tests.fuzz import strategies as fz
from tests.fuzz.stats import tally
from tests.fuzz.test_capture import check_storable

PB, JSON = "application/x-protobuf", "application/json"
RECEIVER_LIMIT = 256 * 1024  # OTLP_MAX_BODY_SIZE for the receiver tests: huge bodies get 413

# Attribute names the mapping reads (both OpenLLMetry generations, LLMFlow's own, HTTP).
KEYS = [
    "gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.system", "gen_ai.request.model",
    "gen_ai.response.model", "gen_ai.request.temperature", "gen_ai.request.max_tokens",
    "gen_ai.request.top_p", "gen_ai.response.finish_reasons", "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens", "gen_ai.usage.total_tokens", "gen_ai.usage.prompt_tokens",
    "gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.reasoning_tokens", "llm.usage.total_tokens",
    "gen_ai.is_streaming", "gen_ai.input.messages", "gen_ai.output.messages",
    "gen_ai.system_instructions", "gen_ai.tool.definitions", "gen_ai.prompt.0.role",
    "gen_ai.prompt.0.content", "gen_ai.prompt.1.tool_calls.0.arguments", "gen_ai.completion.0.content",
    "gen_ai.completion.0.finish_reason", "gen_ai.completion.0.tool_calls.0.name",
    "llm.request.type", "llm.request.functions.0.parameters", "llm.response.finish_reason",
    "gen_ai.server.time_to_first_token", "traceloop.span.kind", "traceloop.entity.input",
    "traceloop.entity.output", "traceloop.association.properties.user_id",
    "traceloop.association.properties.tenant", "user.id", "session.id", "error.type",
    "http.request.method", "http.method", "url.full", "http.url", "http.response.status_code",
    "http.request.header.authorization", "llmflow.ttft_ms", "llmflow.model", "llmflow.duplicate_of",
    "llmflow.span.source", "llmflow.span.kind", "llmflow.span.status", "llmflow.span.duration_ms",
    "llmflow.span.request", "llmflow.span.response", "llmflow.span.error", "llmflow.span.otel",
]
MESSAGES = [
    [{"role": "user", "parts": [{"type": "text", "content": "Hi"}]}],
    [{"role": "assistant", "parts": [{"type": "tool_call", "id": "c1", "name": "f", "arguments": "{}"},
                                     {"type": "reasoning", "content": "hmm"}], "finish_reason": "stop"}],
    {"role": "user", "content": "x"},
    {"method": "POST", "url": "https://api.openai.com/v1/chat", "messages": [{"role": "user", "content": "Hi"}]},
]


@st.composite
def json_text(draw) -> str:
    """A JSON-encoded attribute value (messages, tool definitions, exported span fields)."""
    seed = draw(st.sampled_from(MESSAGES))
    kind = draw(st.sampled_from(["seed", "wrong", "mutated", "deep", "any"]))
    if kind == "seed":
        return json.dumps(seed)
    if kind == "wrong":
        return fz.dumps(draw(fz.wrong_types(seed))).decode()
    if kind == "mutated":
        return draw(fz.mutated(json.dumps(seed).encode())).decode("utf-8", "replace")
    if kind == "deep":
        return draw(fz.with_deep_nesting(seed)).decode()
    return fz.dumps(draw(fz.JSON_VALUES)).decode()


ODD_STRINGS = ["²", "१२", "99999999999999999999999", "openai", "anthropic", "stop", "true", "chat",
               "proxy", "otlp", "error", "llm", "NaN"]


def any_values(depth: int = 0) -> st.SearchStrategy[AnyValue]:
    """AnyValues of every kind: strings (JSON ones too), int64s, doubles (NaN), bools, bytes,
    empty, and arrays / kvlists of those."""
    scalars = st.one_of(
        st.builds(lambda v: AnyValue(string_value=v),
                  st.one_of(st.text(max_size=20), json_text(), st.sampled_from(ODD_STRINGS))),
        st.builds(lambda v: AnyValue(int_value=v), st.integers(-(2**63), 2**63 - 1)),
        st.builds(lambda v: AnyValue(double_value=v), st.floats()),
        st.builds(lambda v: AnyValue(bool_value=v), st.booleans()),
        st.builds(lambda v: AnyValue(bytes_value=v), st.binary(max_size=16)),
        st.just(AnyValue()),
    )
    if depth >= 2:
        return scalars
    children = st.deferred(lambda: any_values(depth + 1))
    return st.one_of(
        scalars,
        st.builds(lambda vs: AnyValue(array_value=ArrayValue(values=vs)), st.lists(children, max_size=3)),
        st.builds(lambda kv: AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in kv])),
                  st.lists(st.tuples(st.text(max_size=8), children), max_size=3)),
    )


def attribute_lists(max_size: int) -> st.SearchStrategy[list[KeyValue]]:
    return st.lists(st.builds(lambda k, v: KeyValue(key=k, value=v),
                              st.one_of(st.sampled_from(KEYS), st.sampled_from(KEYS), st.text(max_size=12)),
                              any_values()), max_size=max_size)


ATTRIBUTES, FEW_ATTRIBUTES = attribute_lists(10), attribute_lists(2)


def _ids(size: int) -> st.SearchStrategy[bytes]:
    """Mostly valid ids (so spans get decoded), sometimes all zero or of the wrong length."""
    valid = st.integers(1, 2 ** (8 * size) - 1).map(lambda n: n.to_bytes(size, "big"))
    invalid = st.one_of(st.just(b"\x00" * size), st.binary(max_size=20))
    return st.integers(0, 9).flatmap(lambda n: invalid if n == 9 else valid)


IDS, TRACE_IDS = _ids(8), _ids(16)
PLAUSIBLE = st.integers(1_700_000_000 * 10**9, 1_900_000_000 * 10**9)
TIMES = st.one_of(PLAUSIBLE, PLAUSIBLE, PLAUSIBLE, st.integers(0, 2**64 - 1),
                  st.sampled_from([0, 1, 2**63 - 1, 2**63, 2**64 - 1, 10**19]))


@st.composite
def pb_spans(draw) -> PbSpan:
    span = PbSpan(trace_id=draw(TRACE_IDS), span_id=draw(IDS), name=draw(st.text(max_size=20)),
                  kind=draw(st.integers(-5, 10)), start_time_unix_nano=draw(TIMES),
                  end_time_unix_nano=draw(TIMES), attributes=draw(ATTRIBUTES),
                  trace_state=draw(st.text(max_size=10)),
                  status=Status(code=draw(st.integers(-1, 5)), message=draw(st.text(max_size=20))))
    if draw(st.booleans()):
        span.parent_span_id = draw(IDS)
    if draw(st.booleans()):
        span.events.add(name=draw(st.sampled_from(["exception", "x", ""])), time_unix_nano=draw(TIMES),
                        attributes=draw(FEW_ATTRIBUTES))
    if draw(st.booleans()):
        span.links.add(trace_id=draw(TRACE_IDS), span_id=draw(IDS), attributes=draw(FEW_ATTRIBUTES))
    return span


@st.composite
def requests(draw) -> ExportTraceServiceRequest:
    resource_spans = []
    for _ in range(draw(st.integers(1, 2))):
        resource = Resource(attributes=draw(FEW_ATTRIBUTES) + [KeyValue(key="service.name", value=draw(any_values(2)))])
        scopes = [ScopeSpans(scope=InstrumentationScope(name=draw(st.text(max_size=10)), version=draw(st.text(max_size=5))),
                             spans=draw(st.lists(pb_spans(), min_size=1, max_size=3)))
                  for _ in range(draw(st.integers(1, 1)))]
        resource_spans.append(ResourceSpans(resource=resource, scope_spans=scopes))
    return ExportTraceServiceRequest(resource_spans=resource_spans)


def to_otlp_json(message: ExportTraceServiceRequest) -> dict:
    """OTLP/JSON as exporters write it: hex ids, camelCase, enums as integers."""
    doc = json_format.MessageToDict(message, use_integers_for_enums=True)
    for resource_spans in doc.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for holder in [span, *span.get("links", [])]:
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if key in holder:
                            holder[key] = base64.b64decode(holder[key]).hex()
    return doc


@st.composite
def payloads(draw) -> tuple[bytes, str]:
    """(body, content type): valid, mutated, wrongly typed or random; protobuf or JSON."""
    kind = draw(st.sampled_from(["pb", "pb-mutated", "json", "json-wrong", "json-mutated",
                                 "random", "nasty", "deep-json"]))
    if kind == "random":
        return draw(st.binary(max_size=512)), draw(st.sampled_from([PB, JSON]))
    if kind == "nasty":
        return draw(st.sampled_from(list(fz.NASTY.values()))), draw(st.sampled_from([PB, JSON]))
    if kind == "deep-json":
        doc = {"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": []}]}]}]}
        return draw(fz.with_deep_nesting(doc)), JSON
    message = draw(requests())
    if kind.startswith("pb"):
        body = message.SerializeToString()
        return (draw(fz.mutated(body)) if kind == "pb-mutated" else body), PB
    doc = to_otlp_json(message)
    if kind == "json":
        return json.dumps(doc).encode(), JSON
    body = fz.dumps(draw(fz.wrong_types(doc)))
    return (draw(fz.mutated(body)) if kind == "json-mutated" else body), JSON


# -- the decoder --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sqlite(tmp_path_factory):
    store = SQLiteStore(Path(tmp_path_factory.mktemp("fuzz-otlp")) / "spans.sqlite3")
    yield store
    store.close()


def check_decode(body: bytes, content_type: str, store: SQLiteStore) -> list[Span]:
    """Decodes; only OTLPError may escape; each span valid and storable (ids made unique, as
    the fuzzer repeats them across examples)."""
    try:
        spans = otlp.decode_request(body, content_type)
    except otlp.OTLPError:
        return []
    for span in spans:
        assert isinstance(span, Span)
        check_storable(span.with_changes(span_id=new_span_id()), store)
    return spans


@given(payload=payloads())
def test_decode_request_raises_only_otlp_error(payload, sqlite):
    body, content_type = payload
    spans = check_decode(body, content_type, sqlite)
    tally("otlp: decode_request (protobuf + JSON)", 1 + len(spans), len(body))


@given(body=st.binary(max_size=256), content_type=st.one_of(
    st.sampled_from([PB, JSON, "application/protobuf", "application/json; charset=utf-8", "text/plain",
                     "", "protobuf", "json", "APPLICATION/JSON"]), st.text(max_size=20)))
def test_decode_request_any_bytes_any_type(body, content_type, sqlite):
    check_decode(body, content_type, sqlite)
    tally("otlp: decode_request, random bytes and content types", 1, len(body))


# -- the receiver ---------------------------------------------------------------------------------------
def make_store(kind: str, directory: Path):
    import mongomock

    from llmflow_core.store.mongo import MongoStore

    if kind == "sqlite":
        return SQLiteStore(directory / "spans.sqlite3")
    return MongoStore(client=mongomock.MongoClient(tz_aware=True), database="llmflow_fuzz")


@contextlib.contextmanager
def serving(store) -> Iterator[Client]:
    """A test client for /v1/traces on ``store``, with a small body limit and no token."""
    old = settings.LLMFLOW
    settings.LLMFLOW = dataclasses.replace(old, otlp_max_body_size=RECEIVER_LIMIT, otlp_ingest_token="")
    repository.use_store(store)
    try:
        yield Client()
    finally:
        repository.use_store(None)
        settings.LLMFLOW = old
        store.close()


@pytest.fixture(scope="module", params=["sqlite", "mongomock"])
def receiver(request, tmp_path_factory):
    """/v1/traces on a fresh store of each kind."""
    with serving(make_store(request.param, Path(tmp_path_factory.mktemp("fuzz-receiver")))) as client:
        yield client


def bomb(size: int) -> bytes:
    return gzip.compress(b"\x00" * size, 9)


@st.composite
def encoded(draw, body: bytes) -> tuple[bytes, str | None]:
    how = draw(st.sampled_from(["none", "none", "gzip", "gzip-truncated", "gzip-flipped", "not-gzip",
                                "gzip-twice", "bomb", "deflate", "br"]))
    if how == "none":
        return body, None
    if how == "gzip":
        return gzip.compress(body), draw(st.sampled_from(["gzip", "x-gzip", "GZIP"]))
    if how == "gzip-truncated":
        data = gzip.compress(body)
        return data[:draw(st.integers(0, len(data) - 1))], "gzip"
    if how == "gzip-flipped":
        data = bytearray(gzip.compress(body))
        data[draw(st.integers(0, len(data) - 1))] ^= 0xFF
        return bytes(data), "gzip"
    if how == "gzip-twice":  # concatenated members
        return gzip.compress(body) + gzip.compress(body), "gzip"
    if how == "bomb":  # inflates past the limit
        return bomb(RECEIVER_LIMIT * draw(st.sampled_from([2, 64]))), "gzip"
    if how == "not-gzip":
        return body, "gzip"
    return body, how


ALLOWED = {200, 400, 413, 415}


@hypothesis_settings(max_examples=max(1, hypothesis_settings().max_examples // 2))  # half per store
@given(payload=payloads(), data=st.data())
def test_receiver_never_answers_500(payload, data, receiver):
    body, content_type = payload
    if data.draw(st.integers(0, 9)) == 0:  # bigger than OTLP_MAX_BODY_SIZE
        body = body + b"\x00" * RECEIVER_LIMIT
    wire, encoding = data.draw(encoded(body), label="encoding")
    content_type = data.draw(st.one_of(st.just(content_type), st.sampled_from(
        [PB, JSON, "application/json; charset=utf-8", "text/plain", "application/x-www-form-urlencoded"])),
        label="content type")
    headers = {"HTTP_CONTENT_ENCODING": encoding} if encoding else {}
    response = receiver.generic("POST", "/v1/traces", wire, content_type=content_type, **headers)
    assert response.status_code in ALLOWED, (response.status_code, response.content[:300])
    tally("otlp: /v1/traces receiver (gzip variants, both stores)", 1, len(wire))
