"""Ollama's native API: ``/api/chat``, ``/api/generate`` (NDJSON streams), ``/api/embed(dings)``.

Ollama's OpenAI-compatible ``/v1/...`` paths are not handled here: ``parse`` returns None for
them and the registry falls back to the OpenAI parser.
"""

from __future__ import annotations

from typing import Any

from llmflow_core.providers.base import (
    ParsedCall, Usage, as_dict, as_int, as_list, as_str, iter_ndjson, loads,
)
from llmflow_core.providers.openai import parse_arguments

FINISH_REASONS = {"stop": "stop", "length": "length"}

# options{} keys -> OpenAI parameter names.
OPTION_KEYS = {
    "temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "num_predict": "max_tokens",
    "stop": "stop", "seed": "seed", "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}


def normalise_finish(raw: Any, has_tool_calls: bool = False) -> str | None:
    if not isinstance(raw, str):
        return None
    if raw == "stop" and has_tool_calls:  # Ollama ends a tool call with a plain "stop"
        return "tool_calls"
    return FINISH_REASONS.get(raw, raw)  # "load" / "unload": kept as sent


def usage_from(doc: dict[str, Any]) -> Usage:
    """prompt_eval_count is absent when the whole prompt came from Ollama's cache: unknown, not 0."""
    return Usage(prompt_tokens=as_int(doc.get("prompt_eval_count")),
                 completion_tokens=as_int(doc.get("eval_count"))).complete()


def error_from(body: Any, status: int | None) -> dict[str, Any] | None:
    err = as_dict(body).get("error")
    if isinstance(err, str):
        return {"type": "api_error", "message": err, "status_code": status}
    if isinstance(err, dict):
        return {"type": as_str(err.get("type")) or "api_error",
                "message": str(err.get("message") or ""), "status_code": status}
    return None


def _parameters(data: dict[str, Any], stream: bool | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    options = data.get("options")
    if isinstance(options, dict):
        for key, name in OPTION_KEYS.items():
            if key in options:
                params[name] = options[key]
        if options:
            params["options"] = options
    if data.get("format"):  # "json" or a JSON schema; "" means none
        params["response_format"] = data["format"]
    if "think" in data:
        params["reasoning"] = data["think"]
    if isinstance(data.get("tools"), list) and data["tools"]:
        params["tools"] = data["tools"]
    for key in ("keep_alive", "dimensions", "truncate"):
        if data.get(key) is not None:
            params[key] = data[key]
    if stream is not None:
        params["stream"] = stream
    return params


def _request(body: Any, call: ParsedCall, default_stream: bool) -> dict[str, Any]:
    data = as_dict(body)
    call.request_model = as_str(data.get("model"))
    # Ollama streams unless the request says "stream": false.
    stream = data.get("stream") if isinstance(data.get("stream"), bool) else default_stream
    call.stream = stream
    call.parameters = _parameters(data, stream if default_stream else None)
    return data


def _chunks(response: bytes) -> tuple[list[tuple[int, Any]], Any]:
    """(offset, object) per NDJSON line, and the whole body's JSON when it is one document.

    The body shape decides, not the content type: a single (maybe pretty-printed) document is a
    plain answer; several lines are a stream, and a cut-off last line is skipped.
    """
    whole = loads(response)
    if whole is not None:
        return [(0, whole)], whole
    return list(iter_ndjson(response)), None


def _tool_calls(raw: Any) -> list[dict[str, Any]]:
    calls = []
    for item in as_list(raw):
        item = as_dict(item)
        fn = as_dict(item.get("function"))
        calls.append({"id": as_str(item.get("id")), "name": as_str(fn.get("name")),
                      "arguments": parse_arguments(fn.get("arguments"))})
    return calls


def _parse_generation(call: ParsedCall, response: bytes, status: int | None, streamed: bool,
                      chat: bool) -> None:
    chunks, whole = _chunks(response)
    stream_shape = streamed or len(chunks) > 1
    if not stream_shape:
        call.response_body = _storable(whole)
    text: list[str] = []
    thinking: list[str] = []
    tools: list[dict[str, Any]] = []
    done_reason: Any = None
    for offset, raw in chunks:
        chunk = as_dict(raw)
        if not chunk:
            continue
        call.events += 1
        error = error_from(chunk, status)
        if error is not None:
            call.error = error
            continue
        call.response_model = as_str(chunk.get("model")) or call.response_model
        source = as_dict(chunk.get("message")) if chat else chunk
        content = source.get("content" if chat else "response")
        carried = False
        if isinstance(content, str) and content:
            text.append(content)
            carried = True
        if isinstance(source.get("thinking"), str) and source["thinking"]:
            thinking.append(source["thinking"])
            carried = True
        new_tools = _tool_calls(source.get("tool_calls"))
        if new_tools:  # each tool call arrives whole, never in fragments
            tools.extend(new_tools)
            carried = True
        if carried and stream_shape and call.first_token_offset is None:
            call.first_token_offset = offset
        if chunk.get("done") is True:
            done_reason = chunk.get("done_reason")
            call.usage = usage_from(chunk)
    if text:
        call.output["text"] = "".join(text)
    if thinking:
        call.output["reasoning"] = "".join(thinking)
    if tools:
        call.output["tool_calls"] = tools
    call.finish_reason_raw = as_str(done_reason)
    call.finish_reason = normalise_finish(done_reason, bool(tools))
    if call.error is not None and call.finish_reason is None and call.events > 1:  # mid-stream
        call.finish_reason, call.finish_reason_raw = "error", "error"


def _storable(doc: Any) -> Any:
    """The document to store: /api/generate's ``context`` token ids are dropped (long, opaque)."""
    if isinstance(doc, dict) and isinstance(doc.get("context"), list):
        return {**doc, "context": f"[{len(doc['context'])} context tokens not stored]"}
    return doc


def _without_images(message: dict[str, Any]) -> dict[str, Any]:
    """A message as stored: base64 ``images`` are replaced by a note of their size."""
    images = message.get("images")
    if not isinstance(images, list) or not images:
        return message
    notes = [f"[{len(i)} characters of base64 image not stored]" if isinstance(i, str) else i
             for i in images]
    return {**message, "images": notes}


def parse_chat(request_body: Any, response: bytes, status: int | None, streamed: bool) -> ParsedCall:
    call = ParsedCall(endpoint="chat", operation="chat")
    data = _request(request_body, call, default_stream=True)
    call.messages = [_without_images(m) for m in as_list(data.get("messages")) if isinstance(m, dict)]
    _parse_generation(call, response, status, streamed, chat=True)
    return call


def parse_generate(request_body: Any, response: bytes, status: int | None,
                   streamed: bool) -> ParsedCall:
    call = ParsedCall(endpoint="generate", operation="generate")
    data = _request(request_body, call, default_stream=True)
    messages: list[dict[str, Any]] = []
    if isinstance(data.get("system"), str) and data["system"]:
        messages.append({"role": "system", "content": data["system"]})
    if data.get("prompt") is not None:
        user: dict[str, Any] = {"role": "user", "content": data["prompt"]}
        if data.get("images"):
            user["images"] = data["images"]
        messages.append(_without_images(user))
    call.messages = messages
    _parse_generation(call, response, status, streamed, chat=False)
    return call


def parse_embeddings(request_body: Any, response: bytes, status: int | None, operation: str,
                     input_key: str) -> ParsedCall:
    call = ParsedCall(endpoint="embeddings", operation=operation)
    data = _request(request_body, call, default_stream=False)
    call.stream = False
    if data.get(input_key) is not None:
        call.messages = [{"role": "input", "content": data[input_key]}]
    parsed = loads(response)
    call.error = error_from(parsed, status)
    doc = as_dict(parsed)
    call.response_model = as_str(doc.get("model"))
    prompt = as_int(doc.get("prompt_eval_count"))
    call.usage = Usage(prompt_tokens=prompt, total_tokens=prompt)
    # /api/embed: "embeddings": [[...], ...]; the older /api/embeddings: "embedding": [...].
    vectors = as_list(doc.get("embeddings")) if "embeddings" in doc else (
        [doc["embedding"]] if isinstance(doc.get("embedding"), list) else [])
    dimensions = len(vectors[0]) if vectors and isinstance(vectors[0], list) else None
    # Never the vectors themselves: large and unreadable.
    call.output = {"embeddings": len(vectors), "dimensions": dimensions}
    if isinstance(parsed, dict):  # else capture keeps the raw text
        call.response_body = {k: v for k, v in doc.items() if k not in ("embedding", "embeddings")}
        if vectors:
            call.response_body["embeddings"] = (
                f"[{len(vectors)} embeddings of {dimensions} dimensions not stored]")
    return call


def parse(path: str, request_body: Any, response: bytes, status: int | None,
          streamed: bool) -> ParsedCall | None:
    bare = path.split("?", 1)[0].rstrip("/")
    if bare.endswith("/api/chat"):
        return parse_chat(request_body, response, status, streamed)
    if bare.endswith("/api/generate"):
        return parse_generate(request_body, response, status, streamed)
    if bare.endswith("/api/embed"):
        return parse_embeddings(request_body, response, status, "embed", "input")
    if bare.endswith("/api/embeddings"):
        return parse_embeddings(request_body, response, status, "embeddings", "prompt")
    return None  # /v1/... (OpenAI-compatible) and the model-management API
