"""Fuzz: ``build_span`` on random Exchanges, and the span through a real SQLiteStore.

Property: for any exchange (broken bodies of every provider, any content encoding with bodies
that do or do not decode, weird / duplicate / secret headers, odd trace headers, chunk times,
status codes, transport errors), ``build_span``

- never raises, and gives a valid Span whose JSON is strict JSON (no NaN) and valid UTF-8;
- shows no secret header value (nor a credential in the URL) anywhere;
- keeps the stored bodies within the cap (``CaptureOptions.max_body_size``): the span's JSON
  stays within a small multiple of it, plus the headers and URL it was given;
- round-trips through a real SQLiteStore (``write_batch`` -> ``get_span`` equal), stays
  queryable there (attribute and full-text queries read the stored JSON), and is a document
  MongoDB could store (BSON-encodable): never corrupts a store.

And ``BodyTee`` (what runs on the proxy's event loop) forwards every chunk unchanged and keeps
a bounded head and tail of it.
"""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import bson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmflow_core.capture import CaptureOptions, build_span
from llmflow_core.exchange import Exchange
from llmflow_core.spans import Span
from llmflow_core.store.base import SpanQuery
from llmflow_core.store.mongo import to_doc
from llmflow_core.store.sqlite import SQLiteStore
from tests.fuzz import strategies as fz
from tests.fuzz.stats import tally

T0 = 1_795_176_000.123  # 2026-11-20T12:00:00Z
SECRET_NAMES = ["authorization", "proxy-authorization", "x-api-key", "api-key", "x-goog-api-key",
                "cookie", "set-cookie", "openai-organization", "openai-project", "x-llmflow-key",
                "anthropic-admin-key", "x-auth-token"]
SECRET_WORDS = ["api-key", "api_key", "apikey", "token", "secret", "password", "auth"]
CONTENT_TYPES = ["application/json", "application/json; charset=utf-8", "text/event-stream",
                 "TEXT/EVENT-STREAM; charset=UTF-8", "application/x-ndjson", "application/jsonl",
                 "text/html", "text/plain", "image/png", "audio/wav", "application/octet-stream",
                 "multipart/form-data; boundary=x", "", ";", "application/json-seq"]
ENCODINGS = ["gzip", "x-gzip", "GZIP ", "deflate", "br", "zstd", "identity", "bogus", "gzip, br", ""]


def _tmp_store(tmp_path_factory) -> SQLiteStore:
    return SQLiteStore(Path(tmp_path_factory.mktemp("fuzz-capture")) / "spans.sqlite3")


@pytest.fixture(scope="module")
def sqlite(tmp_path_factory):
    store = _tmp_store(tmp_path_factory)
    yield store
    store.close()


# -- exchanges -------------------------------------------------------------------------------------
HEADER_TEXT = st.one_of(fz.WIRE_TEXT, st.sampled_from(["", " ", "\udcff\udc80", "é", "\x00", "a, b"]))


@st.composite
def secret_headers(draw) -> tuple[list[tuple[str, str]], list[str]]:
    """Credential headers (names from the product's list, or any name with a secret word), each
    with a unique value to look for in the output."""
    headers, secrets = [], []
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            name = draw(st.sampled_from(SECRET_NAMES))
        else:
            name = (draw(st.sampled_from(["", "x-", "x-ratelimit-", "anthropic-", "x-trace-"]))
                    + draw(st.sampled_from(SECRET_WORDS))
                    + draw(st.sampled_from(["", "-id", "-value"])))
        name = "".join(c.upper() if draw(st.booleans()) else c for c in name)
        secret = "zzsecret" + draw(st.text("0123456789abcdef", min_size=16, max_size=16))
        prefix = draw(st.sampled_from(["", "Bearer ", "Basic ", "sk-", "session="]))
        headers.append((name, prefix + secret))
        secrets.append(secret)
    return headers, secrets


@st.composite
def plain_headers(draw, kind: str) -> list[tuple[str, str]]:
    headers = []
    if draw(st.integers(0, 4)):
        headers.append(("Content-Type", draw(st.sampled_from(CONTENT_TYPES))))
    if kind == "response":
        for name in ("x-request-id", "request-id", "x-ratelimit-remaining-requests", "retry-after",
                     "anthropic-ratelimit-tokens-limit", "retry-after-ms"):
            if draw(st.integers(0, 3)) == 0:
                headers.append((name, draw(HEADER_TEXT)))
    for _ in range(draw(st.integers(0, 3))):  # any name, duplicates included
        name = draw(st.one_of(st.sampled_from(["content-type", "Content-Type", "x-request-id",
                                               "content-encoding", "X-Foo", "x-foo"]),
                              st.text(min_size=1, max_size=12)))
        headers.append((name, draw(HEADER_TEXT)))
    return draw(st.permutations(headers))


def encode(body: bytes, encoding: str, how: str) -> bytes:
    name = encoding.strip().lower()
    if how == "raw" or not body:
        return body
    if name in ("gzip", "x-gzip"):
        data = gzip.compress(body, 1)
    elif name == "deflate":
        data = zlib.compress(body, 1) if how != "raw-deflate" else zlib.compress(body)[2:-4]
    else:
        return body
    if how == "corrupt":  # truncated and flipped: cannot be decoded
        data = data[: max(1, len(data) * 2 // 3)]
        data = data[:-1] + bytes([data[-1] ^ 0x55])
    return data


TRACE_HEADERS = st.lists(st.tuples(
    st.sampled_from(["traceparent", "x-trace-id", "x-parent-span-id", "x-trace-service",
                     "x-trace-user-id", "x-trace-session-id", "x-trace-feature", "x-trace-step",
                     "x-trace-tenant", "helicone-property-team", "helicone-session-id", "X-Trace-Id"]),
    st.one_of(HEADER_TEXT, st.sampled_from([
        "00-5b8efff798038103d269b633813fc60c-1111111111111111-01",
        "00-00000000000000000000000000000000-1111111111111111-01",
        "ff-5b8efff798038103d269b633813fc60c-1111111111111111-01",
        "5B8EFFF798038103D269B633813FC60C", "123e4567-e89b-12d3-a456-426614174000",
        "1111111111111111", "5b8efff798038103d269b633813fc60c\n"]))), max_size=4)


@st.composite
def exchanges(draw) -> tuple[Exchange, list[str]]:
    route = draw(st.sampled_from(fz.ROUTES + ["mistral", "unknown-route"]))
    parser_route = route if route in fz.ENDPOINTS else "openai"
    path = draw(st.one_of(st.sampled_from(fz.ENDPOINTS[parser_route]), fz.WIRE_TEXT,
                         fz.WIRE_TEXT.map(lambda t: fz.ENDPOINTS[parser_route][0] + "?q=" + t)))
    request_secrets, secrets = draw(secret_headers())
    response_secrets, more = draw(secret_headers())
    secrets += more
    query_secret = "zzsecret" + draw(st.text("0123456789abcdef", min_size=16, max_size=16))
    url = "https://api.example.com" + path
    if draw(st.booleans()):  # credentials in the URL: ?key= (Gemini) and user:password@
        bare = path.split("#", 1)[0]  # (after a '#' it would be a fragment, never sent)
        url = f"https://user:{query_secret}@api.example.com{bare}{'&' if '?' in bare else '?'}key={query_secret}"
        secrets.append(query_secret)
    request_body = draw(fz.request_bodies(parser_route))
    response_plain = draw(fz.response_bodies(parser_route))
    encoding = draw(st.sampled_from(ENCODINGS))
    how = draw(st.sampled_from(["ok", "ok", "corrupt", "raw", "raw-deflate"]))
    response_body = encode(response_plain, encoding, how)
    response_headers = draw(plain_headers("response")) + response_secrets
    if encoding:
        response_headers.append(("Content-Encoding", encoding))
    size = len(response_body)
    tail = b""
    if draw(st.integers(0, 5)) == 0:  # a body too long to keep whole: head and tail
        cut = draw(st.integers(0, size))
        tail = draw(st.sampled_from([b"", response_body[cut:][-4096:], b'data: {"usage": 1}\n\n']))
        size += draw(st.integers(1, 1 << 30))
        response_body = response_body[:cut]
    started = T0 + draw(st.floats(-1e6, 1e6))
    ended = draw(st.one_of(st.none(), st.floats(-5, 600).map(lambda d: started + d)))
    times = draw(st.lists(st.tuples(st.integers(0, max(size, 1)), st.floats(-10, 700).map(lambda d: started + d)),
                          max_size=20))
    if draw(st.booleans()):
        times.sort()
    error = draw(st.one_of(st.none(), HEADER_TEXT, st.sampled_from([
        "Client disconnected.", "Server disconnected.", "timed out", "Connection reset by peer",
        "upstream timeout", "failed with sk-abcdefghijklmnopqrstuv", "Bearer abcdefghijkl12345"])))
    exchange = Exchange(
        route=route, method=draw(st.sampled_from(["POST", "GET", "PUT", "DELETE", ""])), url=url, path=path,
        request_headers=draw(plain_headers("request")) + request_secrets,
        request_body=request_body, started=started, trace_headers=draw(TRACE_HEADERS),
        status_code=draw(st.one_of(st.none(), st.sampled_from([200, 400, 429, 500]), st.integers(100, 599))),
        response_headers=draw(st.permutations(response_headers)), response_body=response_body,
        response_tail=tail, response_size=size, chunk_times=times, response_started=None, ended=ended,
        streamed=draw(st.booleans()), error=error, cancelled=draw(st.booleans()),
        client_status=draw(st.one_of(st.none(), st.sampled_from([502, 504]))))
    return exchange, secrets


LIMITS = st.sampled_from([0, 64, 1000, 4096, 65536, 1 << 20])


def overhead(exchange: Exchange) -> int:
    """What a span repeats of its exchange besides the (capped) bodies: headers and URLs."""
    given_text = json.dumps([exchange.request_headers, exchange.response_headers, exchange.trace_headers],
                            ensure_ascii=False)
    return 2 * len(given_text) + 3 * (len(exchange.url) + len(exchange.path)) + 2 * len(exchange.error or "")


def check_storable(span: Span, store: SQLiteStore) -> str:
    """The span's JSON (strict); asserts it round-trips through the store and stays queryable."""
    text = json.dumps(span.to_json(), allow_nan=False, ensure_ascii=False)
    text.encode("utf-8")  # no lone surrogates
    bson.encode(to_doc(span))  # what MongoStore.write_batch sends
    assert store.write_batch([span]) == 1
    back = store.get_span(span.span_id)
    assert back == span
    # These read the stored JSON in SQL (json_extract, FTS): a bad document breaks every query.
    store.list_spans(SpanQuery(attributes={"endpoint": "chat"}, limit=1))
    store.list_spans(SpanQuery(text="hello", limit=1))
    return text


@given(case=exchanges(), limit=LIMITS)
def test_build_span_never_raises_and_stores(case, limit, sqlite):
    exchange, secrets = case
    span = build_span(exchange, CaptureOptions(max_body_size=limit))
    assert isinstance(span, Span)
    text = check_storable(span, sqlite)
    for secret in secrets:
        assert secret not in text, f"secret {secret} leaked"
    if limit:
        assert len(text) <= 8 * limit + overhead(exchange) + 16384, (len(text), limit)
    size = len(exchange.request_body) + len(exchange.response_body) + len(exchange.response_tail)
    tally("capture: build_span on random exchanges", 2, size)


@given(chunks=st.lists(st.binary(max_size=300), max_size=60), head_limit=st.integers(0, 2048))
def test_tee_forwards_every_chunk_unchanged(chunks, head_limit):
    """The proxy-side half (runs on the event loop): each chunk passes through as is, and what is
    kept is a bounded head (a prefix of the body) plus a tail (a suffix of it)."""
    from llmflow_core.exchange import TAIL_BYTES, BodyTee

    tee = BodyTee(head_limit=head_limit)
    for chunk in chunks:
        assert tee(chunk) is chunk
    exchange = Exchange(route="openai", method="POST", url="u", path="/", request_headers=[],
                        request_body=b"", started=T0)
    tee.fill(exchange)
    body = b"".join(chunks)
    assert exchange.response_size == len(body)
    assert body.startswith(exchange.response_body) and body.endswith(exchange.response_tail)
    assert len(exchange.response_body) < head_limit + 300 or exchange.response_body == body
    assert len(exchange.response_tail) < TAIL_BYTES + 300
    assert [offset for offset, _ in exchange.chunk_times] == sorted(offset for offset, _ in exchange.chunk_times)
    tally("capture: BodyTee forwarding", len(chunks), len(body))
