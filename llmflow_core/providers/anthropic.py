"""Anthropic Messages API: ``POST /v1/messages`` (also ``?beta=true``), whole or streamed (SSE)."""

from __future__ import annotations

from typing import Any

from llmflow_core.providers.base import (
    ParsedCall, Usage, as_dict, as_int, as_list, as_str, iter_sse, loads, pick_parameters,
)
from llmflow_core.providers.openai import parse_arguments

STOP_REASONS = {
    "end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop",
    "max_tokens": "length", "model_context_window_exceeded": "length",
    "tool_use": "tool_calls", "refusal": "content_filter",
}
# content_block_delta type -> (field carrying the piece, block buffer it goes to)
DELTAS = {"text_delta": ("text", "text"), "thinking_delta": ("thinking", "thinking"),
          "input_json_delta": ("partial_json", "json")}


def normalise_finish(raw: Any) -> str | None:
    if not isinstance(raw, str):
        return None
    return STOP_REASONS.get(raw, raw)


def usage_from(raw: Any, base: Usage | None = None) -> Usage:
    """Usage from an Anthropic ``usage`` object, on top of ``base`` (stream: later counts win).

    ``input_tokens`` excludes cache reads and writes, and ``prompt_tokens`` keeps that meaning:
    the cache counts go to ``cached_tokens`` / ``cache_creation_tokens`` and pricing adds them
    back (see ``pricing.genai_usage``). So ``total_tokens`` = input + output, cache NOT included.
    """
    data = as_dict(raw)
    usage = base or Usage()
    for key, attr in (("input_tokens", "prompt_tokens"), ("output_tokens", "completion_tokens"),
                      ("cache_read_input_tokens", "cached_tokens"),
                      ("cache_creation_input_tokens", "cache_creation_tokens")):
        value = as_int(data.get(key))
        if value is not None:
            setattr(usage, attr, value)
    if usage.prompt_tokens is not None and usage.completion_tokens is not None:
        usage.total_tokens = usage.prompt_tokens + usage.completion_tokens
    return usage


def error_from(body: Any, status: int | None) -> dict[str, Any] | None:
    """``{"type": "error", "error": {"type", "message"}}`` (body, or a stream ``error`` event)."""
    data = as_dict(body)
    err = data.get("error")
    if isinstance(err, dict):
        error = {"type": as_str(err.get("type")) or "api_error",
                 "message": str(err.get("message") or ""), "status_code": status}
        if isinstance(data.get("request_id"), str):
            error["request_id"] = data["request_id"]
        return error
    if isinstance(err, str):
        return {"type": "api_error", "message": err, "status_code": status}
    return None


def _messages(data: dict[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    system = data.get("system")
    if isinstance(system, (str, list)) and system:  # a string or a list of text blocks
        messages.append({"role": "system", "content": system})
    messages.extend(m for m in as_list(data.get("messages")) if isinstance(m, dict))
    return messages


def _request(body: Any, call: ParsedCall) -> None:
    data = as_dict(body)
    call.request_model = as_str(data.get("model"))
    call.parameters = pick_parameters(data)
    call.stream = data.get("stream") is True
    call.messages = _messages(data)


def _set_output(call: ParsedCall, texts: list[str], tools: list[dict[str, Any]],
                thinking: list[str], stop_reason: Any) -> None:
    if texts:
        call.output["text"] = "".join(texts)
    if tools:
        call.output["tool_calls"] = tools
    if thinking:
        call.output["reasoning"] = "".join(thinking)
    call.finish_reason_raw = as_str(stop_reason)
    call.finish_reason = normalise_finish(stop_reason)


def _content_output(doc: dict[str, Any], call: ParsedCall) -> None:
    texts: list[str] = []
    tools: list[dict[str, Any]] = []
    thinking: list[str] = []
    for raw_block in as_list(doc.get("content")):
        block = as_dict(raw_block)
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "tool_use":
            tools.append({"id": as_str(block.get("id")), "name": as_str(block.get("name")),
                          "arguments": block.get("input")})
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            thinking.append(block["thinking"])
    _set_output(call, texts, tools, thinking, doc.get("stop_reason"))


def _parse_whole(response: bytes, status: int | None, call: ParsedCall) -> None:
    doc = loads(response)
    call.response_body = doc
    call.error = error_from(doc, status)
    doc = as_dict(doc)
    call.response_model = as_str(doc.get("model"))
    call.usage = usage_from(doc.get("usage"))
    _content_output(doc, call)


def _new_block(start: dict[str, Any]) -> dict[str, Any]:
    """A block being streamed; pieces are kept in lists and joined once (no quadratic +=)."""
    block = as_dict(start.get("content_block"))
    return {"type": as_str(block.get("type")), "id": as_str(block.get("id")),
            "name": as_str(block.get("name")), "input": block.get("input"),
            "text": [as_str(block.get("text")) or ""], "thinking": [as_str(block.get("thinking")) or ""],
            "json": []}


def _apply_delta(slot: dict[str, Any], delta: dict[str, Any]) -> bool:
    """Adds one ``content_block_delta`` to its block; True when it carried output."""
    field, buffer = DELTAS.get(as_str(delta.get("type")) or "", (None, None))
    piece = delta.get(field) if field else None
    if not isinstance(piece, str):
        return False  # signature_delta, citations_delta: nothing to show
    slot[buffer].append(piece)
    return bool(piece)


def _parse_stream(response: bytes, status: int | None, call: ParsedCall) -> None:
    blocks: dict[int, dict[str, Any]] = {}
    stop_reason: Any = None
    usage = Usage()
    for event in iter_sse(response):
        payload = as_dict(loads(event.data))
        if not payload:
            continue
        call.events += 1
        kind = as_str(payload.get("type")) or event.event
        if kind == "message_start":
            message = as_dict(payload.get("message"))
            call.response_model = as_str(message.get("model")) or call.response_model
            # output_tokens here is a placeholder (1-3); message_delta brings the real count.
            usage = usage_from(message.get("usage"), usage)
        elif kind == "content_block_start":
            index = as_int(payload.get("index")) or 0
            slot = blocks[index] = _new_block(payload)
            # A tool call's start names the tool: that is the first output the client sees.
            if call.first_token_offset is None and (slot["type"] == "tool_use" or slot["text"][0]):
                call.first_token_offset = event.offset
        elif kind == "content_block_delta":
            index = as_int(payload.get("index")) or 0
            slot = blocks.setdefault(index, _new_block({}))
            if _apply_delta(slot, as_dict(payload.get("delta"))) and call.first_token_offset is None:
                call.first_token_offset = event.offset
        elif kind == "message_delta":
            stop_reason = as_dict(payload.get("delta")).get("stop_reason") or stop_reason
            usage = usage_from(payload.get("usage"), usage)  # cumulative counts: later wins
        elif kind == "error":
            call.error = error_from(payload, status)
    call.usage = usage
    texts, tools, thinking = [], [], []
    for index in sorted(blocks):
        slot = blocks[index]
        text, reasoning, json_text = ("".join(slot[k]) for k in ("text", "thinking", "json"))
        if slot["type"] == "tool_use":
            # Arguments stream as JSON fragments; a truncated stream keeps the partial text.
            arguments = parse_arguments(json_text) if json_text else slot["input"]
            tools.append({"id": slot["id"], "name": slot["name"], "arguments": arguments})
        elif reasoning:
            thinking.append(reasoning)
        elif text:
            texts.append(text)
    _set_output(call, texts, tools, thinking, stop_reason)
    if call.error is not None and call.finish_reason is None and call.events > 1:  # mid-stream
        call.finish_reason, call.finish_reason_raw = "error", as_str(call.error.get("type"))


def parse_messages(request_body: Any, response: bytes, status: int | None,
                   streamed: bool) -> ParsedCall:
    call = ParsedCall(endpoint="messages", operation="messages.create")
    _request(request_body, call)
    # Trust the body shape too: an error answer to a stream request is plain JSON, and an SSE
    # body with a wrong content type is still a stream.
    head = response.lstrip()[:16]
    if head.startswith((b"event:", b"data:", b":")) or (streamed and not head.startswith(b"{")):
        _parse_stream(response, status, call)
    else:
        _parse_whole(response, status, call)
    return call


def parse(path: str, request_body: Any, response: bytes, status: int | None,
          streamed: bool) -> ParsedCall | None:
    bare = path.split("?", 1)[0].rstrip("/")
    if bare.endswith("/messages"):  # not /messages/count_tokens nor /messages/batches
        return parse_messages(request_body, response, status, streamed)
    return None
