"""OpenAI and OpenAI-compatible APIs: chat completions, Responses, embeddings, completions."""

from __future__ import annotations

from typing import Any

from llmflow_core.providers.base import (
    ParsedCall, Usage, as_dict, as_int, as_list, as_str, iter_sse, loads, pick_parameters,
)

FINISH_REASONS = {
    "stop": "stop", "length": "length", "tool_calls": "tool_calls", "function_call": "tool_calls",
    "content_filter": "content_filter", "eos": "stop", "model_length": "length",
}


def normalise_finish(raw: Any) -> str | None:
    if not isinstance(raw, str):
        return None
    return FINISH_REASONS.get(raw, raw)


def parse_arguments(text: Any) -> Any:
    """Tool-call arguments arrive as a JSON string: parsed when possible, else kept as text."""
    if isinstance(text, str):
        value = loads(text)
        return value if value is not None or text.strip() == "null" else text
    return text


def usage_from(raw: Any) -> Usage:
    data = as_dict(raw)
    if not data:
        return Usage()
    prompt = as_int(data.get("prompt_tokens"))
    completion = as_int(data.get("completion_tokens"))
    if prompt is None and completion is None:  # Responses API names
        prompt = as_int(data.get("input_tokens"))
        completion = as_int(data.get("output_tokens"))
    prompt_details = as_dict(data.get("prompt_tokens_details") or data.get("input_tokens_details"))
    completion_details = as_dict(data.get("completion_tokens_details") or data.get("output_tokens_details"))
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=as_int(data.get("total_tokens")),
        cached_tokens=as_int(prompt_details.get("cached_tokens")),
        reasoning_tokens=as_int(completion_details.get("reasoning_tokens")),
    ).complete()


def error_from(body: Any, status: int | None) -> dict[str, Any] | None:
    data = as_dict(body)
    err = data.get("error")
    if isinstance(err, dict):
        return {"type": as_str(err.get("type")) or as_str(err.get("code")) or "api_error",
                "message": str(err.get("message") or ""), "code": err.get("code"),
                "param": err.get("param"), "status_code": status}
    if isinstance(err, str):
        return {"type": "api_error", "message": err, "status_code": status}
    return None


def _tool_calls(raw: Any, legacy: Any = None) -> list[dict[str, Any]]:
    calls = []
    if isinstance(legacy, dict):  # the pre-tools ``function_call`` field
        calls.append({"id": None, "name": legacy.get("name"),
                      "arguments": parse_arguments(legacy.get("arguments"))})
    for call in as_list(raw):
        fn = as_dict(as_dict(call).get("function"))
        calls.append({"id": as_dict(call).get("id"), "name": fn.get("name"),
                      "arguments": parse_arguments(fn.get("arguments"))})
    return calls


def _request(body: Any, call: ParsedCall) -> dict[str, Any]:
    data = as_dict(body)
    call.request_model = as_str(data.get("model"))
    call.parameters = pick_parameters(data)
    call.stream = bool(data.get("stream"))
    return data


def parse_chat(request_body: Any, response: bytes, status: int | None, streamed: bool) -> ParsedCall:
    call = ParsedCall(endpoint="chat", operation="chat.completions.create")
    data = _request(request_body, call)
    call.messages = [m for m in as_list(data.get("messages")) if isinstance(m, dict)]
    if streamed:
        _chat_stream(response, call, status)
    else:
        doc = loads(response)
        call.response_body = doc
        call.error = error_from(doc, status)
        doc = as_dict(doc)
        call.response_model = as_str(doc.get("model"))
        call.usage = usage_from(doc.get("usage"))
        choices = []
        for choice in as_list(doc.get("choices")):
            message = as_dict(as_dict(choice).get("message"))
            choices.append({
                "index": as_dict(choice).get("index"),
                "text": message.get("content"),
                "refusal": message.get("refusal"),
                "reasoning": message.get("reasoning_content") or message.get("reasoning"),
                "tool_calls": _tool_calls(message.get("tool_calls"), message.get("function_call")),
                "finish_reason": as_dict(choice).get("finish_reason"),
            })
        _set_output(call, choices)
    return call


def _set_output(call: ParsedCall, choices: list[dict[str, Any]]) -> None:
    if not choices:
        return
    first = choices[0]
    call.output = {key: first[key] for key in ("text", "refusal", "reasoning") if first.get(key)}
    if first.get("tool_calls"):
        call.output["tool_calls"] = first["tool_calls"]
    if len(choices) > 1:
        call.output["choices"] = choices
    call.finish_reason_raw = as_str(first.get("finish_reason"))
    call.finish_reason = normalise_finish(call.finish_reason_raw)


def _chat_stream(body: bytes, call: ParsedCall, status: int | None) -> None:
    choices: dict[int, dict[str, Any]] = {}
    for event in iter_sse(body):
        if event.data.strip() == "[DONE]":
            continue
        chunk = loads(event.data)
        if not isinstance(chunk, dict):
            continue
        call.events += 1
        if "error" in chunk:
            call.error = error_from(chunk, status)
            call.finish_reason = call.finish_reason_raw = "error"
            continue
        call.response_model = as_str(chunk.get("model")) or call.response_model
        usage = chunk.get("usage") or as_dict(chunk.get("x_groq")).get("usage")
        if isinstance(usage, dict):
            call.usage = usage_from(usage)
        for raw_choice in as_list(chunk.get("choices")):
            choice = as_dict(raw_choice)
            index = as_int(choice.get("index")) or 0
            # Pieces are collected in lists and joined once: += on long streams is quadratic.
            slot = choices.setdefault(index, {"index": index, "text": [], "reasoning": [],
                                              "refusal": [], "tools": {}, "finish_reason": None})
            delta = as_dict(choice.get("delta"))
            if "text" in choice and isinstance(choice.get("text"), str):  # legacy completions
                delta = {"content": choice["text"]}
            for key, target in (("content", "text"), ("reasoning_content", "reasoning"),
                                ("reasoning", "reasoning"), ("refusal", "refusal")):
                piece = delta.get(key)
                if isinstance(piece, str) and piece:
                    slot[target].append(piece)
                    if call.first_token_offset is None:
                        call.first_token_offset = event.offset
            tools = as_list(delta.get("tool_calls"))
            if isinstance(delta.get("function_call"), dict):  # pre-tools streaming shape
                tools = [{"index": 0, "function": delta["function_call"]}]
            for tool in tools:
                tool = as_dict(tool)
                tindex = as_int(tool.get("index")) or 0
                entry = slot["tools"].setdefault(tindex, {"id": None, "name": None, "arguments": []})
                fn = as_dict(tool.get("function"))
                entry["id"] = tool.get("id") or entry["id"]
                entry["name"] = fn.get("name") or entry["name"]
                if isinstance(fn.get("arguments"), str):
                    entry["arguments"].append(fn["arguments"])
                if call.first_token_offset is None:
                    call.first_token_offset = event.offset
            if choice.get("finish_reason"):
                slot["finish_reason"] = choice["finish_reason"]
    assembled = []
    for index in sorted(choices):
        slot = choices[index]
        tools = [{"id": t["id"], "name": t["name"],
                  "arguments": parse_arguments("".join(t["arguments"]))}
                 for _, t in sorted(slot.pop("tools").items())]
        assembled.append({"text": "".join(slot["text"]) or None,
                          "reasoning": "".join(slot["reasoning"]) or None,
                          "refusal": "".join(slot["refusal"]) or None,
                          "finish_reason": slot["finish_reason"], "index": index,
                          "tool_calls": tools})
    _set_output(call, assembled)
    if call.error is not None and call.finish_reason is None:  # the stream failed mid-way
        call.finish_reason = call.finish_reason_raw = "error"


def parse_completions(request_body: Any, response: bytes, status: int | None, streamed: bool) -> ParsedCall:
    call = ParsedCall(endpoint="completions", operation="completions.create")
    data = _request(request_body, call)
    prompt = data.get("prompt")
    call.messages = [{"role": "user", "content": prompt}] if prompt is not None else None
    if streamed:
        _chat_stream(response, call, status)
        call.endpoint, call.operation = "completions", "completions.create"
        return call
    doc = loads(response)
    call.response_body = doc
    call.error = error_from(doc, status)
    doc = as_dict(doc)
    call.response_model = as_str(doc.get("model"))
    call.usage = usage_from(doc.get("usage"))
    _set_output(call, [{"index": as_dict(c).get("index"), "text": as_dict(c).get("text"),
                        "finish_reason": as_dict(c).get("finish_reason")}
                       for c in as_list(doc.get("choices"))])
    return call


def parse_embeddings(request_body: Any, response: bytes, status: int | None, streamed: bool) -> ParsedCall:
    call = ParsedCall(endpoint="embeddings", operation="embeddings.create")
    data = _request(request_body, call)
    inputs = data.get("input")
    call.messages = [{"role": "input", "content": inputs}] if inputs is not None else None
    doc = loads(response)
    call.error = error_from(doc, status)
    if not isinstance(doc, dict):  # not JSON (an HTML 502, say): capture keeps the raw text
        return call
    call.response_model = as_str(doc.get("model"))
    call.usage = usage_from(doc.get("usage"))
    vectors = as_list(doc.get("data"))
    dimensions = None
    if vectors:
        first = as_dict(vectors[0]).get("embedding")
        if isinstance(first, list):
            dimensions = len(first)
        elif isinstance(first, str):  # encoding_format=base64 (the SDK's default): float32s
            dimensions = len(first.rstrip("=")) * 3 // 4 // 4
    # Never the vectors themselves: large and unreadable.
    call.output = {"embeddings": len(vectors), "dimensions": dimensions}
    call.response_body = {k: v for k, v in doc.items() if k != "data"} | {
        "data": f"[{len(vectors)} embeddings of {dimensions} dimensions not stored]"}
    return call


def _responses_output(doc: dict[str, Any], call: ParsedCall, http_status: int | None = None) -> None:
    texts, tools, reasoning = [], [], []
    for item in as_list(doc.get("output")):
        item = as_dict(item)
        kind = item.get("type")
        if kind == "message":
            for part in as_list(item.get("content")):
                part = as_dict(part)
                if part.get("type") == "output_text" and isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif part.get("type") == "refusal":
                    call.output["refusal"] = part.get("refusal")
        elif kind == "function_call":
            tools.append({"id": item.get("call_id") or item.get("id"), "name": item.get("name"),
                          "arguments": parse_arguments(item.get("arguments"))})
        elif kind == "reasoning":
            for part in as_list(item.get("summary")):
                if isinstance(as_dict(part).get("text"), str):
                    reasoning.append(part["text"])
    if texts:
        call.output["text"] = "".join(texts)
    if tools:
        call.output["tool_calls"] = tools
    if reasoning:
        call.output["reasoning"] = "\n".join(reasoning)
    status = as_str(doc.get("status"))
    reason = as_str(as_dict(doc.get("incomplete_details")).get("reason"))
    call.finish_reason_raw = reason or status
    if status == "completed":
        call.finish_reason = "tool_calls" if tools else "stop"
    elif status == "incomplete":
        call.finish_reason = "length" if reason == "max_output_tokens" else (
            "content_filter" if reason == "content_filter" else reason or "length")
    elif status in ("failed", "cancelled"):
        call.finish_reason = "error" if status == "failed" else "cancelled"
    call.response_model = as_str(doc.get("model")) or call.response_model
    if doc.get("usage"):
        call.usage = usage_from(doc.get("usage"))
    if isinstance(doc.get("error"), dict):
        call.error = error_from(doc, http_status)


# Responses stream events that carry the first piece of output (text, tool arguments, reasoning).
FIRST_TOKEN_EVENTS = frozenset({
    "response.output_text.delta", "response.function_call_arguments.delta",
    "response.reasoning_summary_text.delta", "response.reasoning_text.delta", "response.refusal.delta",
})


def parse_responses(request_body: Any, response: bytes, status: int | None, streamed: bool) -> ParsedCall:
    call = ParsedCall(endpoint="responses", operation="responses.create")
    data = _request(request_body, call)
    items = data.get("input")
    messages: list[dict[str, Any]] = []
    if isinstance(data.get("instructions"), str):
        messages.append({"role": "system", "content": data["instructions"]})
    if isinstance(items, str):
        messages.append({"role": "user", "content": items})
    else:
        messages.extend(as_dict(item) for item in as_list(items))
    call.messages = messages
    if not streamed:
        doc = loads(response)
        call.response_body = doc
        call.error = error_from(doc, status)
        _responses_output(as_dict(doc), call, status)
        return call
    text: list[str] = []
    final: dict[str, Any] | None = None
    for event in iter_sse(response):
        payload = as_dict(loads(event.data))
        if not payload:
            continue
        call.events += 1
        kind = event.event or as_str(payload.get("type"))
        if kind == "response.output_text.delta" and isinstance(payload.get("delta"), str):
            text.append(payload["delta"])
        if kind in FIRST_TOKEN_EVENTS and call.first_token_offset is None:
            call.first_token_offset = event.offset
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            final = as_dict(payload.get("response"))
        elif kind == "response.created":
            call.response_model = as_str(as_dict(payload.get("response")).get("model"))
        elif kind == "error":
            # the API nests the details under "error"; older docs showed them at the top level
            detail = as_dict(payload.get("error")) or payload
            call.error = {"type": as_str(detail.get("type")) or as_str(detail.get("code")) or "stream_error",
                          "message": str(detail.get("message") or ""), "code": detail.get("code"),
                          "status_code": status}
            call.finish_reason = call.finish_reason_raw = "error"
    if final is not None:
        _responses_output(final, call, status)
    if text and "text" not in call.output:
        call.output["text"] = "".join(text)
    return call


ENDPOINTS = {
    "chat/completions": parse_chat,
    "completions": parse_completions,
    "embeddings": parse_embeddings,
    "responses": parse_responses,
}


def parse(path: str, request_body: Any, response: bytes, status: int | None,
          streamed: bool) -> ParsedCall | None:
    bare = path.split("?", 1)[0].rstrip("/")
    for suffix, parser in ENDPOINTS.items():
        if bare.endswith("/" + suffix):
            return parser(request_body, response, status, streamed)
    return None
