"""Anthropic Messages parser: synthetic fixtures modelled on the real wire format."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmflow_core import providers
from llmflow_core.providers import anthropic

PATH = "/v1/messages"


def sse(*events: tuple[str, Any]) -> bytes:
    """An Anthropic SSE body: ``event:`` + ``data:`` per event, blank line after each."""
    out = []
    for name, data in events:
        payload = data if isinstance(data, str) else json.dumps(data)
        out.append(f"event: {name}\ndata: {payload}\n\n")
    return "".join(out).encode()


def message(content: list[dict[str, Any]], stop_reason: str = "end_turn", **usage: int) -> bytes:
    return json.dumps({
        "id": "msg_01", "type": "message", "role": "assistant",
        "model": "claude-3-5-haiku-20241022", "content": content,
        "stop_reason": stop_reason, "stop_sequence": None,
        "usage": usage or {"input_tokens": 17, "output_tokens": 9},
    }).encode()


def message_start(input_tokens: int = 17, **extra: int) -> dict[str, Any]:
    return {"type": "message_start", "message": {
        "id": "msg_02", "type": "message", "role": "assistant", "model": "claude-3-7-sonnet-20250219",
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1, **extra}}}


def block_start(index: int, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def delta(index: int, **body: Any) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": body}


REQUEST = {
    "model": "claude-3-5-haiku-latest", "max_tokens": 1024, "temperature": 0.2,
    "system": "Be terse.", "messages": [{"role": "user", "content": "Tell me a joke"}],
}


def test_non_stream_text() -> None:
    body = message([{"type": "text", "text": "Why did the span"}, {"type": "text", "text": " end?"}])
    call = anthropic.parse(PATH, REQUEST, body, 200, False)
    assert call is not None
    assert (call.endpoint, call.operation) == ("messages", "messages.create")
    assert call.request_model == "claude-3-5-haiku-latest"
    assert call.response_model == "claude-3-5-haiku-20241022"
    assert call.messages == [{"role": "system", "content": "Be terse."},
                             {"role": "user", "content": "Tell me a joke"}]
    assert call.parameters == {"max_tokens": 1024, "temperature": 0.2}
    assert call.output == {"text": "Why did the span end?"}
    assert (call.finish_reason, call.finish_reason_raw) == ("stop", "end_turn")
    assert (call.usage.prompt_tokens, call.usage.completion_tokens, call.usage.total_tokens) == (17, 9, 26)
    assert call.usage.cached_tokens is None and call.usage.cache_creation_tokens is None
    assert call.response_body == json.loads(body)
    assert call.error is None and call.stream is False and call.first_token_offset is None


def test_system_as_blocks_and_request_parameters() -> None:
    system = [{"type": "text", "text": "You are a bot.", "cache_control": {"type": "ephemeral"}}]
    tools = [{"name": "get_time", "input_schema": {"type": "object"}}]
    request = {**REQUEST, "system": system, "tools": tools, "stream": True, "top_k": 5,
               "thinking": {"type": "enabled", "budget_tokens": 1024}, "stop_sequences": ["END"]}
    call = anthropic.parse(PATH, request, b"", 200, True)
    assert call.messages[0] == {"role": "system", "content": system}
    assert call.parameters == {"max_tokens": 1024, "temperature": 0.2, "stream": True, "top_k": 5,
                               "thinking": {"type": "enabled", "budget_tokens": 1024},
                               "stop_sequences": ["END"], "tools": tools}
    assert call.stream is True


def test_non_stream_tool_use() -> None:
    body = message([
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "NYC"}},
        {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
    ], stop_reason="tool_use")
    call = anthropic.parse(PATH, REQUEST, body, 200, False)
    assert call.output["text"] == "Let me check."
    assert call.output["tool_calls"] == [
        {"id": "toolu_1", "name": "get_weather", "arguments": {"location": "NYC"}},
        {"id": "toolu_2", "name": "get_time", "arguments": {}},
    ]
    assert (call.finish_reason, call.finish_reason_raw) == ("tool_calls", "tool_use")


def test_non_stream_thinking() -> None:
    body = message([
        {"type": "thinking", "thinking": "Count the r's: 3.", "signature": "Er0B"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": "3"},
    ], input_tokens=52, output_tokens=215)
    call = anthropic.parse(PATH, REQUEST, body, 200, False)
    assert call.output == {"text": "3", "reasoning": "Count the r's: 3."}
    # Anthropic counts thinking inside output_tokens and reports no separate figure.
    assert call.usage.completion_tokens == 215 and call.usage.reasoning_tokens is None


def test_cache_tokens_are_not_in_prompt_or_total() -> None:
    body = message([{"type": "text", "text": "Summary"}], input_tokens=4, output_tokens=202,
                   cache_read_input_tokens=1163, cache_creation_input_tokens=10)
    usage = anthropic.parse(PATH, REQUEST, body, 200, False).usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (4, 202, 206)
    assert (usage.cached_tokens, usage.cache_creation_tokens) == (1163, 10)


@pytest.mark.parametrize(("raw", "normalised"), [
    ("end_turn", "stop"), ("max_tokens", "length"), ("stop_sequence", "stop"),
    ("tool_use", "tool_calls"), ("refusal", "content_filter"), ("pause_turn", "stop"),
    ("model_context_window_exceeded", "length"), ("something_new", "something_new"),
])
def test_stop_reasons(raw: str, normalised: str) -> None:
    call = anthropic.parse(PATH, REQUEST, message([], stop_reason=raw), 200, False)
    assert (call.finish_reason, call.finish_reason_raw) == (normalised, raw)


def full_stream() -> bytes:
    return sse(
        ("message_start", message_start(52, cache_read_input_tokens=100, cache_creation_input_tokens=0)),
        ("content_block_start", block_start(0, {"type": "thinking", "thinking": "", "signature": ""})),
        ("ping", {"type": "ping"}),
        ("content_block_delta", delta(0, type="thinking_delta", thinking="Let me")),
        ("content_block_delta", delta(0, type="thinking_delta", thinking=" think.")),
        ("content_block_delta", delta(0, type="signature_delta", signature="EqQB")),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("content_block_start", block_start(1, {"type": "text", "text": ""})),
        ("content_block_delta", delta(1, type="text_delta", text="I'll check")),
        ("content_block_delta", delta(1, type="text_delta", text=" the weather.")),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        ("content_block_start", block_start(2, {"type": "tool_use", "id": "toolu_9",
                                                "name": "get_weather", "input": {}})),
        ("content_block_delta", delta(2, type="input_json_delta", partial_json="")),
        ("content_block_delta", delta(2, type="input_json_delta", partial_json='{"location": "Par')),
        ("content_block_delta", delta(2, type="input_json_delta", partial_json='is", "unit": "c"}')),
        ("content_block_stop", {"type": "content_block_stop", "index": 2}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use",
                                                              "stop_sequence": None},
                           "usage": {"output_tokens": 87}}),
        ("message_stop", {"type": "message_stop"}),
    )


def test_stream_text_thinking_and_tool_call() -> None:
    body = full_stream()
    call = anthropic.parse(PATH, {**REQUEST, "stream": True}, body, 200, True)
    assert call.stream is True
    assert call.response_model == "claude-3-7-sonnet-20250219"
    assert call.output == {
        "text": "I'll check the weather.",
        "reasoning": "Let me think.",
        "tool_calls": [{"id": "toolu_9", "name": "get_weather",
                        "arguments": {"location": "Paris", "unit": "c"}}],
    }
    assert (call.finish_reason, call.finish_reason_raw) == ("tool_calls", "tool_use")
    usage = call.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (52, 87, 139)
    assert (usage.cached_tokens, usage.cache_creation_tokens) == (100, 0)
    # The first output token is the first thinking delta (not the empty block start, not ping).
    assert call.first_token_offset == body.index(b"event: content_block_delta")
    assert call.events == 18
    assert call.error is None and call.response_body is None


def test_stream_first_token_is_a_tool_call_start() -> None:
    body = sse(
        ("message_start", message_start()),
        ("content_block_start", block_start(0, {"type": "tool_use", "id": "toolu_1",
                                                "name": "get_time", "input": {}})),
        ("content_block_delta", delta(0, type="input_json_delta", partial_json="")),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                           "usage": {"output_tokens": 12}}),
    )
    call = anthropic.parse(PATH, REQUEST, body, 200, True)
    assert call.first_token_offset == body.index(b"event: content_block_start")
    # No argument fragments: the block's own (empty) input stands.
    assert call.output["tool_calls"] == [{"id": "toolu_1", "name": "get_time", "arguments": {}}]


def test_message_delta_usage_overrides_start() -> None:
    """Newer API versions repeat input and cache counts in message_delta: the last value wins."""
    body = sse(
        ("message_start", message_start(10, cache_read_input_tokens=0)),
        ("content_block_delta", delta(0, type="text_delta", text="Hi")),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                           "usage": {"input_tokens": 12, "cache_read_input_tokens": 5,
                                     "output_tokens": 3}}),
    )
    usage = anthropic.parse(PATH, REQUEST, body, 200, True).usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens,
            usage.cached_tokens) == (12, 3, 15, 5)


def test_error_body() -> None:
    body = json.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"},
                       "request_id": "req_011"}).encode()
    call = anthropic.parse(PATH + "?beta=true", {**REQUEST, "stream": True}, body, 529, False)
    assert call.error == {"type": "overloaded_error", "message": "Overloaded", "status_code": 529,
                          "request_id": "req_011"}
    assert call.output == {} and call.finish_reason is None
    assert call.response_model is None and not call.usage.known


def test_error_body_to_a_stream_request_with_stream_content_type() -> None:
    body = b'{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}'
    call = anthropic.parse(PATH, {**REQUEST, "stream": True}, body, 400, True)
    assert call.error == {"type": "invalid_request_error", "message": "bad", "status_code": 400}


def test_error_event_mid_stream() -> None:
    body = sse(
        ("message_start", message_start()),
        ("content_block_start", block_start(0, {"type": "text", "text": ""})),
        ("content_block_delta", delta(0, type="text_delta", text="Partial")),
        ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    )
    call = anthropic.parse(PATH, REQUEST, body, 200, True)
    assert call.error == {"type": "overloaded_error", "message": "Overloaded", "status_code": 200}
    assert call.output == {"text": "Partial"}
    assert (call.finish_reason, call.finish_reason_raw) == ("error", "overloaded_error")
    # No message_delta: the output count is message_start's placeholder, a lower bound.
    assert (call.usage.prompt_tokens, call.usage.completion_tokens) == (17, 1)


def test_truncated_stream_keeps_what_arrived() -> None:
    body = sse(
        ("message_start", message_start()),
        ("content_block_start", block_start(0, {"type": "text", "text": ""})),
        ("content_block_delta", delta(0, type="text_delta", text="Hello")),
        ("content_block_start", block_start(1, {"type": "tool_use", "id": "toolu_3",
                                                "name": "search", "input": {}})),
        ("content_block_delta", delta(1, type="input_json_delta", partial_json='{"q": "wea')),
    ) + b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"del'
    call = anthropic.parse(PATH, REQUEST, body, 200, True)
    assert call.output["text"] == "Hello"
    # Unparseable partial arguments are kept as the text that arrived.
    assert call.output["tool_calls"] == [{"id": "toolu_3", "name": "search", "arguments": '{"q": "wea'}]
    assert call.finish_reason is None and call.error is None
    assert call.events == 5


@pytest.mark.parametrize("body", [b"", b"{not json", b"\x00\xff\xfe", b"[1, 2]", b"null",
                                  b"<html>502</html>"])
def test_malformed_non_stream_body(body: bytes) -> None:
    call = anthropic.parse(PATH, REQUEST, body, 502, False)
    assert call is not None
    assert call.output == {} and call.error is None and not call.usage.known
    assert call.request_model == "claude-3-5-haiku-latest"


def test_malformed_stream_lines_are_skipped() -> None:
    body = (b"event: message_start\ndata: {broken\n\n"
            + sse(("content_block_delta", delta(0, type="text_delta", text="ok")))
            + b"data: [DONE]\n\n: comment\n\nevent: ping\ndata: 42\n\n")
    call = anthropic.parse(PATH, REQUEST, body, 200, True)
    assert call.output == {"text": "ok"}
    assert call.events == 1


def test_wrong_types_never_raise() -> None:
    body = json.dumps({"model": 7, "content": "text", "stop_reason": 5,
                       "usage": "lots"}).encode()
    call = anthropic.parse(PATH, ["not", "a", "dict"], body, 200, False)
    assert call.request_model is None and call.messages == [] and call.parameters == {}
    assert call.response_model is None and call.output == {} and call.finish_reason is None
    assert not call.usage.known

    body = json.dumps({"content": [None, 3, {"type": "text", "text": 5},
                                   {"type": "tool_use", "id": 1, "name": ["x"], "input": "raw"}],
                       "usage": {"input_tokens": "12", "output_tokens": 4.0}}).encode()
    call = anthropic.parse(PATH, {"model": None, "system": 5, "messages": "hi"}, body, 200, False)
    assert call.messages == []
    assert call.output == {"tool_calls": [{"id": None, "name": None, "arguments": "raw"}]}
    usage = call.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (None, 4, None)

    stream = sse(("message_start", {"type": "message_start", "message": "oops"}),
                 ("content_block_start", {"type": "content_block_start", "index": "x",
                                          "content_block": None}),
                 ("content_block_delta", {"type": "content_block_delta", "index": None, "delta": []}),
                 ("message_delta", {"type": "message_delta", "delta": None, "usage": 3}),
                 ("error", {"type": "error", "error": "plain string"}))
    call = anthropic.parse(PATH, None, stream, 200, True)
    assert call.error == {"type": "api_error", "message": "plain string", "status_code": 200}
    assert call.output == {}


def test_paths() -> None:
    body = message([{"type": "text", "text": "hi"}])
    assert anthropic.parse("/v1/messages?beta=true", REQUEST, body, 200, False).output == {"text": "hi"}
    assert anthropic.parse("/anthropic/v1/messages/", REQUEST, body, 200, False) is not None
    assert anthropic.parse("/v1/messages/count_tokens", REQUEST, b'{"input_tokens": 5}', 200, False) is None
    assert anthropic.parse("/v1/messages/batches", REQUEST, b"{}", 200, False) is None


def test_registry_routes_anthropic_and_falls_back_to_openai() -> None:
    assert providers.PARSERS["anthropic"] is anthropic
    call = providers.parse("anthropic", PATH, REQUEST, message([{"type": "text", "text": "hi"}]), 200, False)
    assert call.operation == "messages.create"
    # Anthropic's OpenAI-compatible endpoint is read by the OpenAI parser.
    chat = json.dumps({"model": "claude-x", "choices": [{"index": 0, "finish_reason": "stop",
                                                          "message": {"content": "yo"}}]}).encode()
    call = providers.parse("anthropic", "/v1/chat/completions", {"model": "claude-x"}, chat, 200, False)
    assert call.operation == "chat.completions.create" and call.output["text"] == "yo"
