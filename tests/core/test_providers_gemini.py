"""Gemini parser: synthetic fixtures modelled on the real wire format."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmflow_core import providers
from llmflow_core.providers import gemini

GENERATE = "/v1beta/models/gemini-2.0-flash:generateContent"
STREAM = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"

REQUEST = {
    "contents": [
        {"role": "user", "parts": [{"text": "What is the capital"}, {"text": " of France?"}]},
        {"role": "model", "parts": [{"text": "Paris."}]},
        {"role": "user", "parts": [{"text": "And Italy?"}]},
    ],
    "systemInstruction": {"role": "user", "parts": [{"text": "You are a helpful assistant."}]},
    "generationConfig": {"temperature": 0.1, "topP": 0.9, "topK": 40, "maxOutputTokens": 256,
                         "stopSequences": ["END"], "responseMimeType": "text/plain"},
}


def response(parts: list[dict[str, Any]], finish: str | None = "STOP", usage: dict | None = None,
             **extra: Any) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    doc: dict[str, Any] = {"candidates": [candidate], "modelVersion": "gemini-2.0-flash-001",
                           "responseId": "abc", **extra}
    if usage is not None:
        doc["usageMetadata"] = usage
    return doc


def body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def sse(*docs: Any) -> bytes:
    return "".join(f"data: {d if isinstance(d, str) else json.dumps(d)}\r\n\r\n" for d in docs).encode()


def test_non_stream_text_and_request() -> None:
    doc = response([{"text": "Rome."}], usage={"promptTokenCount": 20, "candidatesTokenCount": 2,
                                               "totalTokenCount": 22})
    call = gemini.parse(GENERATE, REQUEST, body(doc), 200, False)
    assert call is not None
    assert (call.endpoint, call.operation) == ("generate_content", "generate_content")
    assert call.request_model == "gemini-2.0-flash"
    assert call.response_model == "gemini-2.0-flash-001"
    assert call.messages == [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And Italy?"},
    ]
    assert call.parameters == {"temperature": 0.1, "top_p": 0.9, "top_k": 40, "max_tokens": 256,
                               "stop": ["END"], "generationConfig": REQUEST["generationConfig"]}
    assert call.output == {"text": "Rome."}
    assert (call.finish_reason, call.finish_reason_raw) == ("stop", "STOP")
    usage = call.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (20, 2, 22)
    assert usage.reasoning_tokens is None and usage.cached_tokens is None
    assert call.response_body == doc
    assert call.error is None and call.stream is False and call.first_token_offset is None


def test_thoughts_are_reasoning_not_text() -> None:
    doc = response([{"text": "**Thinking** about it", "thought": True}, {"text": "AI is..."}],
                   usage={"promptTokenCount": 5, "candidatesTokenCount": 877,
                          "thoughtsTokenCount": 1058, "totalTokenCount": 1940})
    call = gemini.parse(GENERATE, REQUEST, body(doc), 200, False)
    assert call.output == {"text": "AI is...", "reasoning": "**Thinking** about it"}
    usage = call.usage
    # candidatesTokenCount excludes the thoughts; the total includes them.
    assert (usage.prompt_tokens, usage.completion_tokens, usage.reasoning_tokens,
            usage.total_tokens) == (5, 877, 1058, 1940)


def test_function_call_finishes_as_tool_calls() -> None:
    doc = response([{"functionCall": {"name": "get_capital", "args": {"country": "France"}},
                     "thoughtSignature": "CpYE"},
                    {"functionCall": {"id": "c2", "name": "get_time", "args": {}}}],
                   usage={"promptTokenCount": 57, "candidatesTokenCount": 15, "totalTokenCount": 72})
    call = gemini.parse(GENERATE, REQUEST, body(doc), 200, False)
    assert call.output == {"tool_calls": [
        {"id": None, "name": "get_capital", "arguments": {"country": "France"}},
        {"id": "c2", "name": "get_time", "arguments": {}},
    ]}
    assert (call.finish_reason, call.finish_reason_raw) == ("tool_calls", "STOP")


def test_cached_content_tokens() -> None:
    doc = response([{"text": "Paris."}], usage={
        "promptTokenCount": 3520, "cachedContentTokenCount": 3512, "candidatesTokenCount": 2,
        "thoughtsTokenCount": 42, "totalTokenCount": 3564})
    request = {"cachedContent": "cachedContents/abc", "contents": [{"parts": [{"text": "Capital?"}]}]}
    call = gemini.parse(GENERATE, request, body(doc), 200, False)
    usage = call.usage
    assert (usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens,
            usage.reasoning_tokens, usage.total_tokens) == (3520, 3512, 2, 42, 3564)
    assert usage.cache_creation_tokens is None
    assert call.parameters == {"cached_content": "cachedContents/abc"}
    assert call.messages == [{"role": "user", "content": "Capital?"}]


def test_total_is_summed_when_missing() -> None:
    doc = response([{"text": "x"}], usage={"promptTokenCount": 3, "candidatesTokenCount": 2,
                                           "thoughtsTokenCount": 4})
    assert gemini.parse(GENERATE, REQUEST, body(doc), 200, False).usage.total_tokens == 9


@pytest.mark.parametrize(("raw", "normalised"), [
    ("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"),
    ("RECITATION", "content_filter"), ("BLOCKLIST", "content_filter"),
    ("PROHIBITED_CONTENT", "content_filter"), ("SPII", "content_filter"),
    ("MALFORMED_FUNCTION_CALL", "error"), ("OTHER", "OTHER"),
])
def test_finish_reasons(raw: str, normalised: str) -> None:
    call = gemini.parse(GENERATE, REQUEST, body(response([{"text": "a"}], finish=raw)), 200, False)
    assert (call.finish_reason, call.finish_reason_raw) == (normalised, raw)


def test_safety_block_without_content() -> None:
    doc = {"candidates": [{"content": {}, "finishReason": "SAFETY",
                           "safetyRatings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "blocked": True}]}],
           "usageMetadata": {"promptTokenCount": 14, "totalTokenCount": 14}}
    call = gemini.parse(GENERATE, REQUEST, body(doc), 200, False)
    assert call.output == {}
    assert (call.finish_reason, call.finish_reason_raw) == ("content_filter", "SAFETY")
    assert (call.usage.prompt_tokens, call.usage.completion_tokens, call.usage.total_tokens) == (14, None, 14)


def test_prompt_feedback_block() -> None:
    doc = {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
           "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}, "modelVersion": "gemini-2.5-pro"}
    call = gemini.parse(GENERATE, REQUEST, body(doc), 200, False)
    assert (call.finish_reason, call.finish_reason_raw) == ("content_filter", "PROHIBITED_CONTENT")
    assert call.output == {} and call.response_model == "gemini-2.5-pro"


def test_sse_stream_text_with_thoughts_last_usage_wins() -> None:
    chunks = [
        # An empty first chunk carries no output: the first token is in the next one.
        response([{"text": ""}], finish=None, usage={"promptTokenCount": 15, "totalTokenCount": 15}),
        response([{"text": "Thinking...", "thought": True}], finish=None,
                 usage={"promptTokenCount": 15, "thoughtsTokenCount": 30, "totalTokenCount": 45}),
        response([{"text": "The capital"}], finish=None,
                 usage={"promptTokenCount": 15, "candidatesTokenCount": 3, "totalTokenCount": 48}),
        response([{"text": " is Paris."}], usage={"promptTokenCount": 13, "candidatesTokenCount": 8,
                                                   "thoughtsTokenCount": 30, "totalTokenCount": 51}),
    ]
    stream = sse(*chunks)
    call = gemini.parse(STREAM, REQUEST, stream, 200, True)
    assert call.stream is True and call.parameters["stream"] is True
    assert call.request_model == "gemini-2.5-flash"
    assert call.output == {"text": "The capital is Paris.", "reasoning": "Thinking..."}
    assert (call.finish_reason, call.finish_reason_raw) == ("stop", "STOP")
    usage = call.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.reasoning_tokens,
            usage.total_tokens) == (13, 8, 30, 51)
    second = stream.index(b"data:", 1)
    assert call.first_token_offset == second
    assert call.events == 4 and call.response_body is None


def test_sse_stream_function_call_then_empty_stop() -> None:
    stream = sse(
        response([{"functionCall": {"name": "get_country", "args": {}}, "thoughtSignature": "Ep"}],
                 finish=None, usage={"promptTokenCount": 29, "candidatesTokenCount": 10,
                                     "thoughtsTokenCount": 202, "totalTokenCount": 241}),
        response([{"text": ""}], usage={"promptTokenCount": 29, "candidatesTokenCount": 10,
                                        "thoughtsTokenCount": 202, "totalTokenCount": 241}),
    )
    call = gemini.parse(STREAM, REQUEST, stream, 200, True)
    assert call.output == {"tool_calls": [{"id": None, "name": "get_country", "arguments": {}}]}
    assert call.finish_reason == "tool_calls"
    assert call.first_token_offset == 0


def test_json_array_stream_without_alt_sse() -> None:
    chunks = [response([{"text": ""}], finish=None),
              response([{"text": "Hé"}], finish=None),
              response([{"text": "llo"}], usage={"promptTokenCount": 4, "candidatesTokenCount": 2,
                                                  "totalTokenCount": 6})]
    raw = ("[" + ",\r\n".join(json.dumps(c, ensure_ascii=False) for c in chunks) + "]").encode()
    path = "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
    call = gemini.parse(path, REQUEST, raw, 200, False)
    assert call.output == {"text": "Héllo"}
    assert (call.usage.prompt_tokens, call.usage.completion_tokens) == (4, 2)
    assert call.response_body == chunks
    assert call.events == 3
    # A byte offset, not a character offset: "Hé" sits after the first element and ",\r\n".
    assert call.first_token_offset == len(("[" + json.dumps(chunks[0]) + ",\r\n").encode())
    assert raw[call.first_token_offset:call.first_token_offset + 1] == b"{"


def test_json_array_stream_cut_off() -> None:
    first = json.dumps(response([{"text": "Hello"}], finish=None))
    raw = ("[" + first + ',\n{"candidates": [{"content": {"parts": [{"text": " wor').encode()
    path = "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
    call = gemini.parse(path, REQUEST, raw, 200, True)
    assert call.output == {"text": "Hello"}
    assert call.finish_reason is None and call.events == 1
    assert call.first_token_offset == 1  # just after the "["


def test_error_body() -> None:
    doc = {"error": {"code": 404, "message": "models/gemini-9 is not found", "status": "NOT_FOUND"}}
    call = gemini.parse("/v1beta/models/gemini-9:generateContent", REQUEST, body(doc), 404, False)
    assert call.error == {"type": "NOT_FOUND", "message": "models/gemini-9 is not found",
                          "code": 404, "status_code": 404}
    assert call.request_model == "gemini-9" and call.response_model is None
    assert call.output == {} and call.finish_reason is None and call.response_body == doc


def test_error_to_a_stream_request_as_json_array_and_plain_json() -> None:
    doc = {"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}}
    expected = {"type": "RESOURCE_EXHAUSTED", "message": "Quota exceeded", "code": 429,
                "status_code": 429}
    path = "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
    assert gemini.parse(path, REQUEST, body([doc]), 429, False).error == expected
    assert gemini.parse(STREAM, REQUEST, body(doc), 429, True).error == expected
    assert gemini.parse(STREAM, REQUEST, body(doc), 429, True).finish_reason is None


def test_error_mid_stream() -> None:
    stream = sse(response([{"text": "Par"}], finish=None),
                 {"error": {"code": 500, "message": "Internal error", "status": "INTERNAL"}})
    call = gemini.parse(STREAM, REQUEST, stream, 200, True)
    assert call.error == {"type": "INTERNAL", "message": "Internal error", "code": 500, "status_code": 200}
    assert call.output == {"text": "Par"}
    assert (call.finish_reason, call.finish_reason_raw) == ("error", "INTERNAL")


def test_truncated_sse_stream() -> None:
    stream = sse(response([{"text": "One"}], finish=None, usage={"promptTokenCount": 3}))
    stream += b'data: {"candidates": [{"content": {"parts": [{"text": " two'
    call = gemini.parse(STREAM, REQUEST, stream, 200, True)
    assert call.output == {"text": "One"}
    assert call.finish_reason is None
    assert (call.usage.prompt_tokens, call.usage.completion_tokens, call.usage.total_tokens) == (3, None, 3)


@pytest.mark.parametrize("raw", [b"", b"{oops", b"\xff\xfe", b"null", b"<html>503</html>", b"[1, 2"])
def test_malformed_bodies(raw: bytes) -> None:
    for path, streamed in ((GENERATE, False), (STREAM, True)):
        call = gemini.parse(path, REQUEST, raw, 503, streamed)
        assert call is not None and call.output == {} and call.error is None
        assert not call.usage.known


def test_wrong_types_never_raise() -> None:
    doc = {"candidates": {"not": "a list"}, "usageMetadata": "lots", "modelVersion": 3,
           "promptFeedback": "x"}
    call = gemini.parse(GENERATE, {"contents": "Just a string", "generationConfig": [1],
                                   "systemInstruction": 5}, body(doc), 200, False)
    assert call.messages == [{"role": "user", "content": "Just a string"}]
    assert call.parameters == {}
    assert call.output == {} and call.response_model is None and not call.usage.known

    doc = {"candidates": [None, {"content": {"parts": "text"}, "finishReason": 1},
                          {"content": {"parts": [None, {"text": 5}, {"functionCall": "f"}]}}],
           "usageMetadata": {"promptTokenCount": "7", "candidatesTokenCount": 2.0}}
    call = gemini.parse(GENERATE, ["wrong"], body(doc), 200, False)
    assert call.request_model == "gemini-2.0-flash" and call.messages == []
    assert "text" not in call.output and "tool_calls" not in call.output
    assert call.finish_reason is None
    assert (call.usage.prompt_tokens, call.usage.completion_tokens, call.usage.total_tokens) == (None, 2, 2)


def test_multiple_candidates() -> None:
    doc = {"candidates": [{"content": {"parts": [{"text": "A"}]}, "finishReason": "STOP", "index": 0},
                          {"content": {"parts": [{"text": "B"}]}, "finishReason": "MAX_TOKENS", "index": 1}]}
    call = gemini.parse(GENERATE, REQUEST, body(doc), 200, False)
    assert call.output["text"] == "A" and call.finish_reason == "stop"
    assert [c["text"] for c in call.output["choices"]] == ["A", "B"]


def test_inline_data_is_not_stored_in_messages() -> None:
    request = {"contents": [{"role": "user", "parts": [
        {"text": "Describe"}, {"inlineData": {"mimeType": "image/png", "data": "QUJD" * 100}},
        {"functionResponse": {"name": "f", "response": {"ok": True}}}]}]}
    call = gemini.parse(GENERATE, request, b"{}", 200, False)
    assert call.messages == [{"role": "user", "content": [
        {"text": "Describe"},
        {"inlineData": {"mimeType": "image/png", "data": "[400 characters of base64 data not stored]"}},
        {"functionResponse": {"name": "f", "response": {"ok": True}}}]}]


@pytest.mark.parametrize(("path", "model"), [
    ("/v1/models/gemini-1.5-pro:generateContent", "gemini-1.5-pro"),
    ("/v1beta/models/gemini-2.0-flash:generateContent?key=SECRET", "gemini-2.0-flash"),
    ("/gemini/v1beta/models/gemini-2.0-flash:generateContent", "gemini-2.0-flash"),
    ("/v1beta/tunedModels/my-tune-1:generateContent", "tunedModels/my-tune-1"),
    ("/v1/projects/p/locations/us/publishers/google/models/gemini-2.0-flash:generateContent",
     "gemini-2.0-flash"),
])
def test_model_from_path(path: str, model: str) -> None:
    call = gemini.parse(path, {}, b"{}", 200, False)
    assert call is not None and call.request_model == model


def test_model_version_prefix_is_stripped() -> None:
    doc = {"candidates": [], "modelVersion": "models/gemini-2.0-flash-001"}
    assert gemini.parse(GENERATE, REQUEST, body(doc), 200, False).response_model == "gemini-2.0-flash-001"


def test_unknown_methods_and_registry_fallback() -> None:
    assert gemini.parse("/v1beta/models/gemini-2.0-flash:countTokens", REQUEST, b'{"totalTokens": 5}',
                        200, False) is None
    assert gemini.parse("/v1beta/models", None, b"{}", 200, False) is None
    assert providers.PARSERS["gemini"] is gemini
    chat = json.dumps({"model": "gemini-2.0-flash", "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"content": "hi"}}]}).encode()
    call = providers.parse("gemini", "/v1beta/openai/chat/completions", {"model": "gemini-2.0-flash"},
                           chat, 200, False)
    assert call.operation == "chat.completions.create" and call.output["text"] == "hi"


def test_embed_content() -> None:
    request = {"model": "models/text-embedding-004", "content": {"parts": [{"text": "hello"}]},
               "outputDimensionality": 3, "taskType": "RETRIEVAL_QUERY"}
    doc = {"embedding": {"values": [0.1, 0.2, 0.3]}}
    call = gemini.parse("/v1beta/models/text-embedding-004:embedContent", request, body(doc), 200, False)
    assert (call.endpoint, call.operation) == ("embeddings", "embed_content")
    assert call.request_model == "text-embedding-004"
    assert call.messages == [{"role": "input", "content": "hello"}]
    assert call.parameters == {"dimensions": 3, "task_type": "RETRIEVAL_QUERY"}
    assert call.output == {"embeddings": 1, "dimensions": 3}
    assert call.response_body == {"embeddings": "[1 embeddings of 3 dimensions not stored]"}
    assert not call.usage.known


def test_batch_embed_contents() -> None:
    request = {"requests": [{"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}},
                            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]}}]}
    doc = {"embeddings": [{"values": [1.0, 2.0]}, {"values": [3.0, 4.0]}],
           "usageMetadata": {"promptTokenCount": 2, "totalTokenCount": 2}}
    call = gemini.parse("/v1beta/models/gemini-embedding-001:batchEmbedContents", request, body(doc), 200,
                        False)
    assert (call.endpoint, call.operation) == ("embeddings", "batch_embed_contents")
    assert call.messages == [{"role": "input", "content": ["a", "b"]}]
    assert call.output == {"embeddings": 2, "dimensions": 2}
    assert call.response_body == {"usageMetadata": {"promptTokenCount": 2, "totalTokenCount": 2},
                                  "embeddings": "[2 embeddings of 2 dimensions not stored]"}
    assert (call.usage.prompt_tokens, call.usage.total_tokens) == (2, 2)


def test_embedding_error_and_garbage() -> None:
    doc = {"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}}
    call = gemini.parse("/v1beta/models/e:embedContent", {}, body(doc), 400, False)
    assert call.error["type"] == "INVALID_ARGUMENT" and call.output == {"embeddings": 0, "dimensions": None}
    call = gemini.parse("/v1beta/models/e:batchEmbedContents", {"requests": "x"}, b"<html>", 502, False)
    assert call.response_body is None and call.error is None
