"""Google Gemini API: ``models/{model}:generateContent``, ``:streamGenerateContent`` and embeddings.

The model is in the URL, not the body. A stream is SSE (``?alt=sse``, each ``data:`` a whole
GenerateContentResponse) or, without ``alt=sse``, one JSON array of those responses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

from llmflow_core.providers.base import (
    ParsedCall, Usage, as_dict, as_int, as_list, as_str, iter_sse, loads,
)

# .../models/{model}:{method}; also tunedModels/ and Vertex-style .../publishers/google/models/.
PATH = re.compile(r"(?:^|/)(models|tunedModels)/([^/:]+):([A-Za-z]+)$")

FINISH_REASONS = {
    "STOP": "stop", "MAX_TOKENS": "length",
    "SAFETY": "content_filter", "RECITATION": "content_filter", "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter", "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "MALFORMED_FUNCTION_CALL": "error", "UNEXPECTED_TOOL_CALL": "error",
    "TOO_MANY_TOOL_CALLS": "error",
}

# generationConfig keys (camelCase, and the snake_case the API also accepts) -> OpenAI names.
CONFIG_KEYS = {
    "temperature": "temperature", "topP": "top_p", "top_p": "top_p", "topK": "top_k",
    "top_k": "top_k", "maxOutputTokens": "max_tokens", "max_output_tokens": "max_tokens",
    "stopSequences": "stop", "stop_sequences": "stop", "candidateCount": "n",
    "candidate_count": "n", "seed": "seed", "presencePenalty": "presence_penalty",
    "presence_penalty": "presence_penalty", "frequencyPenalty": "frequency_penalty",
    "frequency_penalty": "frequency_penalty", "responseLogprobs": "logprobs",
    "logprobs": "top_logprobs", "thinkingConfig": "thinking", "thinking_config": "thinking",
}
REQUEST_KEYS = {
    "tools": "tools", "toolConfig": "tool_choice", "tool_config": "tool_choice",
    "safetySettings": "safety_settings", "safety_settings": "safety_settings",
    "cachedContent": "cached_content", "cached_content": "cached_content",
}


def model_name(value: Any) -> str | None:
    """``models/gemini-2.0-flash`` -> ``gemini-2.0-flash`` (tuned models keep their prefix)."""
    name = as_str(value)
    if name and name.startswith("models/"):
        name = name[len("models/"):]
    return name or None


def normalise_finish(raw: Any, has_tool_calls: bool = False) -> str | None:
    if not isinstance(raw, str) or raw == "FINISH_REASON_UNSPECIFIED":
        return None
    if raw == "STOP" and has_tool_calls:  # Gemini ends a function call with a plain STOP
        return "tool_calls"
    return FINISH_REASONS.get(raw, raw)


def usage_from(raw: Any) -> Usage:
    """``candidatesTokenCount`` excludes thoughts (pricing adds them back); the prompt count
    includes ``cachedContentTokenCount``; ``totalTokenCount`` includes both and tool prompts."""
    data = as_dict(raw)
    if not data:
        return Usage()
    usage = Usage(
        prompt_tokens=as_int(data.get("promptTokenCount")),
        completion_tokens=as_int(data.get("candidatesTokenCount")),
        total_tokens=as_int(data.get("totalTokenCount")),
        cached_tokens=as_int(data.get("cachedContentTokenCount")),
        reasoning_tokens=as_int(data.get("thoughtsTokenCount")),
    )
    if usage.total_tokens is None and usage.known:
        usage.total_tokens = sum(n or 0 for n in (usage.prompt_tokens, usage.completion_tokens,
                                                  usage.reasoning_tokens))
    return usage


def error_from(body: Any, status: int | None) -> dict[str, Any] | None:
    """``{"error": {"code", "message", "status"}}``; errors to a stream may come in a list."""
    if isinstance(body, list):  # one level only: a body nested 500 deep recursed until
        # RecursionError (found by tests/fuzz)
        return next((e for e in (error_from(item, status) for item in body
                                 if isinstance(item, dict)) if e), None)
    err = as_dict(body).get("error")
    if isinstance(err, dict):
        return {"type": as_str(err.get("status")) or "api_error",
                "message": str(err.get("message") or ""), "code": err.get("code"),
                "status_code": status}
    if isinstance(err, str):
        return {"type": "api_error", "message": err, "status_code": status}
    return None


def _safe_part(part: Any) -> Any:
    """A request part as stored: inline media is replaced by a note of its size."""
    data = as_dict(part)
    for key in ("inlineData", "inline_data"):
        blob = as_dict(data.get(key))
        if isinstance(blob.get("data"), str):
            note = f"[{len(blob['data'])} characters of base64 data not stored]"
            return {**data, key: {**blob, "data": note}}
    return part


def _content(raw: Any) -> Any:
    """Parts as one string when they are all text, else the (safe) parts themselves."""
    if isinstance(raw, str):
        return raw
    parts = as_list(as_dict(raw).get("parts"))
    if parts and all(isinstance(p, dict) and set(p) == {"text"} and isinstance(p["text"], str)
                     for p in parts):
        return "".join(p["text"] for p in parts)
    return [_safe_part(p) for p in parts]


def _messages(data: dict[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    system = data.get("systemInstruction", data.get("system_instruction"))
    if isinstance(system, (str, dict)) and system:  # Content, or a bare string in some SDKs
        messages.append({"role": "system", "content": _content(system)})
    contents = data.get("contents")
    if isinstance(contents, (str, dict)):  # the SDKs allow one content; REST wants a list
        contents = [contents]
    for item in as_list(contents):
        if isinstance(item, str):
            messages.append({"role": "user", "content": item})
        elif isinstance(item, dict):
            role = as_str(item.get("role")) or "user"
            messages.append({"role": "assistant" if role == "model" else role,
                             "content": _content(item)})
    return messages


def _parameters(data: dict[str, Any], stream: bool) -> dict[str, Any]:
    params: dict[str, Any] = {}
    config = data.get("generationConfig", data.get("generation_config"))
    if isinstance(config, dict):
        for key, name in CONFIG_KEYS.items():
            if key in config:
                params[name] = config[key]
        params["generationConfig"] = config
    for key, name in REQUEST_KEYS.items():
        if key in data:
            params[name] = data[key]
    if stream:
        params["stream"] = True
    return params


def _candidate_slot(slots: dict[int, dict[str, Any]], index: int) -> dict[str, Any]:
    # Text pieces are kept in lists and joined once: no quadratic += on long streams.
    return slots.setdefault(index, {"index": index, "text": [], "reasoning": [],
                                    "tool_calls": [], "finish_reason": None})


def _add_response(doc: Any, call: ParsedCall, slots: dict[int, dict[str, Any]],
                  status: int | None) -> bool:
    """Folds one GenerateContentResponse into the call; True when it carried output."""
    if not isinstance(doc, dict) or not doc:
        return False
    error = error_from(doc, status)
    if error is not None:
        call.error = error
        return False
    call.response_model = model_name(doc.get("modelVersion")) or call.response_model
    if isinstance(doc.get("usageMetadata"), dict):
        call.usage = usage_from(doc["usageMetadata"])  # each is the running total: last wins
    block = as_str(as_dict(doc.get("promptFeedback")).get("blockReason"))
    if block:  # the prompt itself was refused: no candidates follow
        call.finish_reason, call.finish_reason_raw = "content_filter", block
    carried = False
    for position, candidate in enumerate(as_list(doc.get("candidates"))):
        if not isinstance(candidate, dict):
            continue
        index = as_int(candidate.get("index"))
        slot = _candidate_slot(slots, position if index is None else index)
        for raw_part in as_list(as_dict(candidate.get("content")).get("parts")):
            part = as_dict(raw_part)
            call_part = as_dict(part.get("functionCall"))
            if call_part:
                slot["tool_calls"].append({"id": as_str(call_part.get("id")),
                                           "name": as_str(call_part.get("name")),
                                           "arguments": call_part.get("args")})
                carried = True
            elif isinstance(part.get("text"), str) and part["text"]:
                slot["reasoning" if part.get("thought") is True else "text"].append(part["text"])
                carried = True
        if isinstance(candidate.get("finishReason"), str):
            slot["finish_reason"] = candidate["finishReason"]
    return carried


def _set_output(call: ParsedCall, slots: dict[int, dict[str, Any]]) -> None:
    if not slots:
        return
    choices = [{**slots[i], "text": "".join(slots[i]["text"]),
                "reasoning": "".join(slots[i]["reasoning"])} for i in sorted(slots)]
    first = choices[0]
    for key in ("text", "reasoning", "tool_calls"):
        if first[key]:
            call.output[key] = first[key]
    if len(choices) > 1:
        call.output["choices"] = choices
    if first["finish_reason"] is not None:
        call.finish_reason_raw = first["finish_reason"]
        call.finish_reason = normalise_finish(first["finish_reason"], bool(first["tool_calls"]))


_SEPARATORS = re.compile(r"[ \t\r\n,]*")


def _iter_json_array(body: bytes) -> Iterator[tuple[int, Any]]:
    """(byte offset, element) of a JSON array read element by element: a cut-off array still
    yields every complete element before the cut."""
    text = body.decode("utf-8", "replace")
    # Per element work kept small (5 MB of "{}," took 6 s per parse: tests/fuzz): separators
    # skipped by a regex, and byte offsets computed only when the text is not plain ASCII.
    ascii_only = text.isascii()
    decoder = json.JSONDecoder()
    position = text.find("[") + 1
    if position == 0:
        return
    counted, byte_offset = 0, 0
    while position < len(text):
        position = _SEPARATORS.match(text, position).end()
        if position >= len(text) or text[position] == "]":
            return
        try:
            value, end = decoder.raw_decode(text, position)
        except (ValueError, RecursionError):
            return
        if ascii_only:
            byte_offset = position
        else:
            byte_offset += len(text[counted:position].encode("utf-8"))
            counted = position
        yield byte_offset, value
        position = end


def _stream_chunks(body: bytes) -> tuple[list[Any], Callable[[int], int | None]]:
    """A stream body's chunks, and a function giving chunk i's byte offset (asked once at most,
    for the first token's chunk)."""
    head = body.lstrip()[:1]
    if head == b"[":
        whole = loads(body)
        if isinstance(whole, list):
            # A complete array is parsed at C speed, and the element-by-element walk that finds
            # offsets runs only up to the chunk asked for: 5 MB of "{}," took ~3 s walked whole.
            return whole, lambda index: next(islice(_iter_json_array(body), index, None), (None,))[0]
        pairs = list(_iter_json_array(body))  # cut off: every complete element before the cut
    elif head == b"{" and (doc := loads(body)) is not None:
        return [doc], lambda index: 0  # one plain JSON document (an error answer to a stream request)
    else:
        pairs = [(event.offset, value) for event in iter_sse(body)
                 if (value := loads(event.data)) is not None]
    return [value for _, value in pairs], lambda index: pairs[index][0]


def parse_generate(request_body: Any, response: bytes, status: int | None, streamed: bool,
                   model: str | None, stream_method: bool) -> ParsedCall:
    call = ParsedCall(endpoint="generate_content", operation="generate_content")
    data = as_dict(request_body)
    call.request_model = model or model_name(data.get("model"))
    call.stream = stream_method
    call.parameters = _parameters(data, stream_method)
    call.messages = _messages(data)
    slots: dict[int, dict[str, Any]] = {}
    head = response.lstrip()[:1]
    if head == b"{" and not streamed:
        doc = loads(response)
        call.response_body = doc
        _add_response(doc, call, slots, status)
    else:
        chunks, offset_of = _stream_chunks(response)
        first_token: int | None = None
        for index, chunk in enumerate(chunks):
            if _add_response(chunk, call, slots, status) and first_token is None:
                first_token = index
        call.events = len(chunks)
        if first_token is not None:
            call.first_token_offset = offset_of(first_token)
        if not streamed:  # the JSON-array stream form arrives as application/json
            call.response_body = chunks or None
    _set_output(call, slots)
    if call.error is not None and call.finish_reason is None and call.events > 1:
        call.finish_reason, call.finish_reason_raw = "error", as_str(call.error.get("type"))
    return call


def _embedding_size(value: Any) -> int | None:
    values = as_dict(value).get("values")
    return len(values) if isinstance(values, list) else None


def parse_embeddings(request_body: Any, response: bytes, status: int | None, model: str | None,
                     method: str) -> ParsedCall:
    operation = "batch_embed_contents" if method == "batchEmbedContents" else "embed_content"
    call = ParsedCall(endpoint="embeddings", operation=operation)
    data = as_dict(request_body)
    call.request_model = model or model_name(data.get("model"))
    requests = as_list(data.get("requests")) if "requests" in data else [data]
    inputs = [_content(as_dict(r).get("content")) for r in requests if isinstance(r, dict)]
    call.messages = [{"role": "input", "content": inputs[0] if len(inputs) == 1 else inputs}]
    first = as_dict(requests[0]) if requests else {}
    for key, name in (("outputDimensionality", "dimensions"), ("taskType", "task_type")):
        if key in first:
            call.parameters[name] = first[key]
    parsed = loads(response)
    call.error = error_from(parsed, status)
    doc = as_dict(parsed)
    vectors = as_list(doc.get("embeddings")) if "embeddings" in doc else (
        [doc["embedding"]] if "embedding" in doc else [])
    dimensions = _embedding_size(vectors[0]) if vectors else None
    usage = usage_from(doc.get("usageMetadata"))
    call.usage = usage
    # Never the vectors themselves: large and unreadable.
    call.output = {"embeddings": len(vectors), "dimensions": dimensions}
    note = f"[{len(vectors)} embeddings of {dimensions} dimensions not stored]"
    if isinstance(parsed, dict):  # else capture keeps the raw (e.g. HTML error) text
        call.response_body = {k: v for k, v in doc.items() if k not in ("embedding", "embeddings")}
        if vectors:
            call.response_body["embeddings"] = note
    return call


def parse(path: str, request_body: Any, response: bytes, status: int | None,
          streamed: bool) -> ParsedCall | None:
    match = PATH.search(path.split("?", 1)[0].rstrip("/"))
    if match is None:
        return None
    kind, name, method = match.groups()
    model = name if kind == "models" else f"{kind}/{name}"
    if method in ("generateContent", "streamGenerateContent"):
        return parse_generate(request_body, response, status, streamed, model,
                              method == "streamGenerateContent")
    if method in ("embedContent", "batchEmbedContents"):
        return parse_embeddings(request_body, response, status, model, method)
    return None  # countTokens and the rest: recorded as plain HTTP calls
