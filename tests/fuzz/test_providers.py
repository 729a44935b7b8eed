"""Fuzz: every provider parser x endpoint x streamed / not, on broken requests and responses.

Property: ``providers.parse`` never raises, and whatever it returns has the types the capture
relies on (usage counts are ints a store can hold, or None; messages a list of dicts...). The
shared SSE/NDJSON readers give offsets inside the body; a stream cut at any byte still yields
every complete event before the cut.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from llmflow_core import providers
from llmflow_core.providers.base import ParsedCall, Usage, iter_ndjson, iter_sse, loads
from tests.fuzz import strategies as fz
from tests.fuzz.stats import tally

INT64 = 2**63


def check_usage(usage: Usage) -> None:
    for name in ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens",
                 "cache_creation_tokens", "reasoning_tokens"):
        value = getattr(usage, name)
        assert value is None or (type(value) is int and -INT64 <= value < INT64), (name, value)
    assert isinstance(usage.estimated, bool)


def check_call(call: ParsedCall | None, response: bytes) -> None:
    if call is None:
        return
    assert isinstance(call, ParsedCall)
    assert isinstance(call.endpoint, str) and isinstance(call.operation, str)
    for name in ("request_model", "response_model", "finish_reason", "finish_reason_raw"):
        assert getattr(call, name) is None or isinstance(getattr(call, name), str), name
    assert isinstance(call.parameters, dict)
    assert call.messages is None or (isinstance(call.messages, list)
                                     and all(isinstance(m, dict) for m in call.messages))
    assert isinstance(call.output, dict)
    assert call.error is None or isinstance(call.error, dict)
    if call.error is not None:
        assert isinstance(call.error.get("message", ""), str)
    assert type(call.events) is int and call.events >= 0
    offset = call.first_token_offset
    assert offset is None or (type(offset) is int and 0 <= offset <= len(response))
    check_usage(call.usage)


def run(route: str, path: str, request: Any, response: bytes, status: int | None, streamed: bool) -> None:
    call = providers.parse(route, path, request, response, status, streamed)
    check_call(call, response)


STATUS = st.one_of(st.none(), st.sampled_from([200, 200, 400, 429, 500, 529]), st.integers(100, 599))


@given(route=st.sampled_from(fz.ROUTES), data=st.data(), status=STATUS)
def test_every_endpoint_survives_broken_responses(route, data, status):
    """Each case: one broken response x every endpoint of its route x streamed and not."""
    request = data.draw(fz.request_docs(route), label="request")
    response = data.draw(fz.response_bodies(route), label="response")
    paths = fz.ENDPOINTS[route]
    for path in paths:
        for streamed in (False, True):
            run(route, path, request, response, status, streamed)
    tally("providers: broken responses x endpoints", 2 * len(paths), 2 * len(paths) * len(response))


@given(route=st.sampled_from(fz.ROUTES), data=st.data(), streamed=st.booleans(), status=STATUS)
def test_every_endpoint_survives_broken_requests(route, data, streamed, status):
    """Requests of any shape (the capture hands the parser whatever JSON the client sent)."""
    body = data.draw(fz.request_bodies(route), label="request body")
    request = loads(body) if body else None
    response = data.draw(st.sampled_from(fz.RESPONSES[route]), label="response")
    for path in fz.ENDPOINTS[route]:
        run(route, path, request, response, status, streamed)
    tally("providers: broken requests x endpoints", len(fz.ENDPOINTS[route]), len(body))


@given(route=st.sampled_from(fz.ROUTES), path=fz.WIRE_TEXT, response=st.binary(max_size=256),
       streamed=st.booleans())
def test_any_path_and_bytes(route, path, response, streamed):
    """Arbitrary paths (unknown endpoints, odd characters) and arbitrary bytes."""
    run(route, path, None, response, None, streamed)
    run(route, "/" + path.lstrip("/") + "/chat/completions", {"model": path}, response, 200, streamed)
    tally("providers: arbitrary paths and bytes", 2, 2 * len(response))


@given(body=st.one_of(st.binary(max_size=1024), fz.response_bodies()))
def test_stream_framing_readers(body):
    """The shared SSE / NDJSON readers: offsets inside the body, never an exception."""
    for event in iter_sse(body):
        assert 0 <= event.offset <= len(body) and isinstance(event.data, str)
    for offset, _value in iter_ndjson(body):
        assert 0 <= offset <= len(body)
    tally("providers: SSE/NDJSON framing", 2, 2 * len(body))


SSE_SEEDS = [(route, path, body) for route in ("openai", "anthropic", "gemini")
             for body in fz.RESPONSES[route] if body.startswith((b"data:", b"event:"))
             for path in fz.ENDPOINTS[route][:2]]


def _complete_events(body: bytes) -> int:
    """Events of an SSE body that are complete (blank line seen) with a JSON object as data."""
    count = 0
    for block in body.split(b"\n\n")[:-1]:
        data = b"\n".join(line[5:].strip() for line in block.split(b"\n") if line.startswith(b"data:"))
        count += isinstance(loads(data), dict)
    return count


@given(seed=st.sampled_from(SSE_SEEDS), data=st.data())
def test_truncated_stream_is_recorded_up_to_the_cut(seed, data):
    """A stream cut anywhere (client gone, upstream reset) keeps every complete event before
    the cut: recorded as far as it can be parsed."""
    route, path, body = seed
    cut = data.draw(st.integers(0, len(body)), label="cut")
    call = providers.parse(route, path, None, body[:cut], 200, True)
    check_call(call, body[:cut])
    if call is not None:
        assert _complete_events(body[:cut]) <= call.events <= _complete_events(body + b"\n\n")
    tally("providers: streams cut at any byte", 1, cut)
