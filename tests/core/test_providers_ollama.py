"""Ollama native API parser: synthetic fixtures modelled on the real wire format."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmflow_core import providers
from llmflow_core.providers import ollama

CHAT = "/api/chat"
GENERATE = "/api/generate"

CHAT_REQUEST = {"model": "llama3.1", "messages": [{"role": "system", "content": "Be brief."},
                                                  {"role": "user", "content": "Tell me a joke"}],
                "stream": False, "format": "", "keep_alive": None,
                "options": {"temperature": 0.3, "num_predict": 128, "top_p": 0.8, "num_ctx": 4096}}


def ndjson(*lines: Any) -> bytes:
    return "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines).encode()


def chat_line(content: str = "", done: bool = False, **extra: Any) -> dict[str, Any]:
    message = {"role": "assistant", "content": content}
    message.update({k: extra.pop(k) for k in ("thinking", "tool_calls") if k in extra})
    return {"model": "llama3.1", "created_at": "2025-01-01T00:00:00Z", "message": message,
            "done": done, **extra}


def done_fields(prompt: int | None = 44, output: int = 5, reason: str = "stop") -> dict[str, Any]:
    fields: dict[str, Any] = {"done_reason": reason, "total_duration": 6037504209,
                              "load_duration": 28126292, "eval_count": output,
                              "eval_duration": 5825102000}
    if prompt is not None:
        fields["prompt_eval_count"] = prompt
    return fields


def test_chat_non_stream() -> None:
    body = json.dumps(chat_line("Why did the span cross the road?", done=True, **done_fields())).encode()
    call = ollama.parse(CHAT, CHAT_REQUEST, body, 200, False)
    assert call is not None
    assert (call.endpoint, call.operation) == ("chat", "chat")
    assert call.request_model == "llama3.1" and call.response_model == "llama3.1"
    assert call.messages == CHAT_REQUEST["messages"]
    assert call.parameters == {"temperature": 0.3, "max_tokens": 128, "top_p": 0.8,
                               "options": CHAT_REQUEST["options"], "stream": False}
    assert call.stream is False
    assert call.output == {"text": "Why did the span cross the road?"}
    assert (call.finish_reason, call.finish_reason_raw) == ("stop", "stop")
    usage = call.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (44, 5, 49)
    assert call.response_body == json.loads(body)
    assert call.error is None and call.first_token_offset is None and call.events == 1


def test_prompt_from_cache_leaves_prompt_count_unknown() -> None:
    body = json.dumps(chat_line("Hi", done=True, **done_fields(prompt=None, output=79))).encode()
    usage = ollama.parse(CHAT, CHAT_REQUEST, body, 200, False).usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (None, 79, None)


def test_chat_stream() -> None:
    body = ndjson(chat_line(""), chat_line("Here"), chat_line("'s one"),
                  chat_line("", done=True, **done_fields(prompt=17, output=63)))
    request = {"model": "llama3", "messages": [{"role": "user", "content": "joke"}]}
    call = ollama.parse(CHAT, request, body, 200, True)
    # "stream" omitted: Ollama streams by default.
    assert call.stream is True and call.parameters == {"stream": True}
    assert call.output == {"text": "Here's one"}
    assert (call.usage.prompt_tokens, call.usage.completion_tokens, call.usage.total_tokens) == (17, 63, 80)
    assert (call.finish_reason, call.finish_reason_raw) == ("stop", "stop")
    # The first line carries an empty string: the first token is on the second line.
    assert call.first_token_offset == body.index(b"\n") + 1
    assert call.events == 4 and call.response_body is None


def test_chat_stream_thinking_first() -> None:
    body = ndjson(chat_line("", thinking="Hmm, "), chat_line("", thinking="a joke."), chat_line("Sure"),
                  chat_line("", done=True, **done_fields()))
    call = ollama.parse(CHAT, {"model": "qwen3", "think": True, "messages": []}, body, 200, True)
    assert call.output == {"text": "Sure", "reasoning": "Hmm, a joke."}
    assert call.parameters == {"reasoning": True, "stream": True}
    assert call.first_token_offset == 0


def test_chat_stream_tool_calls() -> None:
    tool = {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    second = {"id": "call_2", "function": {"index": 1, "name": "get_time", "arguments": '{"tz": "CET"}'}}
    body = ndjson(chat_line("", tool_calls=[tool]), chat_line("", tool_calls=[second]),
                  chat_line("", done=True, **done_fields()))
    tools = [{"type": "function", "function": {"name": "get_weather"}}]
    call = ollama.parse(CHAT, {"model": "llama3.1", "tools": tools, "messages": []}, body, 200, True)
    assert call.output == {"tool_calls": [
        {"id": None, "name": "get_weather", "arguments": {"city": "Paris"}},
        {"id": "call_2", "name": "get_time", "arguments": {"tz": "CET"}},
    ]}
    assert call.parameters["tools"] == tools
    assert (call.finish_reason, call.finish_reason_raw) == ("tool_calls", "stop")
    assert call.first_token_offset == 0


def test_length_finish() -> None:
    body = json.dumps(chat_line("cut", done=True, **done_fields(reason="length"))).encode()
    call = ollama.parse(CHAT, CHAT_REQUEST, body, 200, False)
    assert (call.finish_reason, call.finish_reason_raw) == ("length", "length")


def test_generate_non_stream_drops_context() -> None:
    request = {"model": "llama3", "prompt": "Tell me a joke", "system": "Be brief.", "stream": False,
               "images": ["aGVsbG8="], "options": {"seed": 7, "stop": ["\n"]}, "format": "json"}
    doc = {"model": "llama3", "created_at": "x", "response": "{\"joke\": \"...\"}", "done": True,
           "context": [1, 2, 3], **done_fields(prompt=8, output=38)}
    call = ollama.parse(GENERATE, request, json.dumps(doc).encode(), 200, False)
    assert (call.endpoint, call.operation) == ("generate", "generate")
    assert call.messages == [{"role": "system", "content": "Be brief."},
                             {"role": "user", "content": "Tell me a joke",
                              "images": ["[8 characters of base64 image not stored]"]}]
    assert call.parameters == {"seed": 7, "stop": ["\n"], "options": {"seed": 7, "stop": ["\n"]},
                               "response_format": "json", "stream": False}
    assert call.output == {"text": "{\"joke\": \"...\"}"}
    assert call.response_body == {**doc, "context": "[3 context tokens not stored]"}
    assert (call.usage.prompt_tokens, call.usage.completion_tokens, call.usage.total_tokens) == (8, 38, 46)


def test_generate_stream() -> None:
    lines = [{"model": "gemma3:1b", "response": piece, "done": False} for piece in ("Okay", ",", " here")]
    last = {"model": "gemma3:1b", "response": "", "done": True, "context": [9] * 50,
            **done_fields(prompt=16, output=51)}
    body = ndjson(*lines, last)
    call = ollama.parse(GENERATE, {"model": "gemma3:1b", "prompt": "joke", "stream": True}, body, 200, True)
    assert call.output == {"text": "Okay, here"}
    assert call.response_model == "gemma3:1b"
    assert (call.usage.prompt_tokens, call.usage.completion_tokens) == (16, 51)
    assert call.first_token_offset == 0 and call.events == 4


def test_chat_images_are_not_stored_in_messages() -> None:
    request = {"model": "llava", "messages": [{"role": "user", "content": "What is this?",
                                               "images": ["QUJD" * 10]}]}
    call = ollama.parse(CHAT, request, b"", 200, True)
    assert call.messages == [{"role": "user", "content": "What is this?",
                              "images": ["[40 characters of base64 image not stored]"]}]


def test_error_body() -> None:
    body = b'{"error":"model \'nope\' not found, try pulling it first"}'
    call = ollama.parse(CHAT, {"model": "nope", "messages": []}, body, 404, False)
    assert call.error == {"type": "api_error", "message": "model 'nope' not found, try pulling it first",
                          "status_code": 404}
    assert call.output == {} and call.finish_reason is None and not call.usage.known


def test_error_mid_stream() -> None:
    body = ndjson(chat_line("Once"), chat_line(" upon"), {"error": "an unknown error was encountered"})
    call = ollama.parse(CHAT, {"model": "llama3", "messages": []}, body, 200, True)
    assert call.error == {"type": "api_error", "message": "an unknown error was encountered",
                          "status_code": 200}
    assert call.output == {"text": "Once upon"}
    assert (call.finish_reason, call.finish_reason_raw) == ("error", "error")


def test_truncated_stream() -> None:
    body = ndjson(chat_line("Hello"), chat_line(" there")) + b'{"model":"llama3","message":{"role":"assi'
    call = ollama.parse(CHAT, {"model": "llama3", "messages": []}, body, 200, True)
    assert call.output == {"text": "Hello there"}
    assert call.finish_reason is None and not call.usage.known and call.events == 2


def test_ndjson_body_without_stream_content_type() -> None:
    """The body shape decides: several lines are a stream whatever the content type said."""
    body = ndjson(chat_line("A"), chat_line("B", done=True, **done_fields()))
    call = ollama.parse(CHAT, {"model": "llama3", "messages": []}, body, 200, False)
    assert call.output == {"text": "AB"}
    assert call.first_token_offset == 0 and call.response_body is None


@pytest.mark.parametrize("body", [b"", b"{oops", b"\xff\xfe\n\x00", b"null", b"[1,2]", b"<html>502</html>"])
def test_malformed_bodies(body: bytes) -> None:
    for path in (CHAT, GENERATE):
        for streamed in (False, True):
            call = ollama.parse(path, {"model": "llama3"}, body, 502, streamed)
            assert call is not None and call.output == {} and call.error is None
            assert not call.usage.known and call.finish_reason is None


def test_wrong_types_never_raise() -> None:
    body = ndjson({"model": 5, "message": "hi", "done": False},
                  {"message": {"content": 7, "thinking": ["x"], "tool_calls": "t"}, "done": "yes"},
                  {"message": {"content": "ok"}, "done": True, "done_reason": 3,
                   "prompt_eval_count": "12", "eval_count": 4.0},
                  [1, 2], "7")
    call = ollama.parse(CHAT, {"model": ["x"], "messages": "hi", "options": "hot", "stream": "yes"},
                        body, 200, True)
    assert call.request_model is None and call.messages == [] and call.stream is True
    assert call.parameters == {"stream": True}
    assert call.output == {"text": "ok"}
    assert call.finish_reason is None and call.response_model is None
    usage = call.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (None, 4, None)
    call = ollama.parse(GENERATE, "not a dict", b'{"response": ["x"], "done": true}', 200, False)
    assert call.output == {} and call.messages == []


def test_embed() -> None:
    doc = {"model": "all-minilm", "embeddings": [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]],
           "total_duration": 14143917, "load_duration": 1019500, "prompt_eval_count": 8}
    call = ollama.parse("/api/embed", {"model": "all-minilm", "input": ["a", "b"], "dimensions": 3},
                        json.dumps(doc).encode(), 200, False)
    assert (call.endpoint, call.operation) == ("embeddings", "embed")
    assert call.messages == [{"role": "input", "content": ["a", "b"]}]
    assert call.parameters == {"dimensions": 3}
    assert call.output == {"embeddings": 2, "dimensions": 3}
    assert call.response_body == {"model": "all-minilm", "total_duration": 14143917,
                                  "load_duration": 1019500, "prompt_eval_count": 8,
                                  "embeddings": "[2 embeddings of 3 dimensions not stored]"}
    assert (call.usage.prompt_tokens, call.usage.completion_tokens, call.usage.total_tokens) == (8, None, 8)
    assert call.stream is False


def test_legacy_embeddings_and_garbage() -> None:
    call = ollama.parse("/api/embeddings", {"model": "nomic-embed-text", "prompt": "hello"},
                        b'{"embedding": [1.0, 2.0]}', 200, False)
    assert (call.endpoint, call.operation) == ("embeddings", "embeddings")
    assert call.messages == [{"role": "input", "content": "hello"}]
    assert call.output == {"embeddings": 1, "dimensions": 2}
    assert call.response_body == {"embeddings": "[1 embeddings of 2 dimensions not stored]"}
    assert not call.usage.known
    call = ollama.parse("/api/embed", None, b"<html>", 502, False)
    assert call.response_body is None and call.output == {"embeddings": 0, "dimensions": None}
    call = ollama.parse("/api/embed", {}, b'{"error": "model not found"}', 404, False)
    assert call.error == {"type": "api_error", "message": "model not found", "status_code": 404}


def test_openai_compatible_paths_fall_back_to_openai() -> None:
    chat = json.dumps({"model": "qwen3:0.6b", "choices": [{"index": 0, "finish_reason": "stop",
                                                           "message": {"content": "Paris"}}],
                       "usage": {"prompt_tokens": 136, "completion_tokens": 15,
                                 "total_tokens": 151}}).encode()
    assert ollama.parse("/v1/chat/completions", {"model": "qwen3:0.6b"}, chat, 200, False) is None
    assert ollama.parse("/api/tags", None, b"{}", 200, False) is None
    assert providers.PARSERS["ollama"] is ollama
    call = providers.parse("ollama", "/v1/chat/completions", {"model": "qwen3:0.6b"}, chat, 200, False)
    assert call.operation == "chat.completions.create" and call.output["text"] == "Paris"
    assert call.usage.total_tokens == 151
    call = providers.parse("ollama", "/ollama/api/chat", {"model": "llama3"},
                           json.dumps(chat_line("hi", done=True)).encode(), 200, False)
    assert call.operation == "chat" and call.output == {"text": "hi"}
