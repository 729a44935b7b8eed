"""OpenAI wire formats -> ParsedCall. Fixtures are small copies of the real shapes."""

import json

from llmflow_core.providers import openai

CHAT_REQ = {"model": "gpt-4o", "messages": [{"role": "user", "content": "weather?"}], "temperature": 0.1,
            "tools": [{"type": "function", "function": {"name": "get_weather"}}]}


def sse(*payloads) -> bytes:
    return b"".join(f"data: {p if isinstance(p, str) else json.dumps(p)}\n\n".encode() for p in payloads)


def test_chat_with_tool_calls_and_cache():
    body = {"id": "x", "model": "gpt-4o-2024-08-06", "choices": [{"index": 0, "finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]}}],
            "usage": {"prompt_tokens": 80, "completion_tokens": 20, "total_tokens": 100,
                      "prompt_tokens_details": {"cached_tokens": 64}, "completion_tokens_details": {"reasoning_tokens": 7}}}
    call = openai.parse("/v1/chat/completions", CHAT_REQ, json.dumps(body).encode(), 200, False)
    assert call.endpoint == "chat" and call.request_model == "gpt-4o" and call.response_model == "gpt-4o-2024-08-06"
    assert call.output["tool_calls"] == [{"id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}]
    assert call.finish_reason == "tool_calls"
    u = call.usage
    assert (u.prompt_tokens, u.completion_tokens, u.total_tokens, u.cached_tokens, u.reasoning_tokens) == (80, 20, 100, 64, 7)
    assert call.parameters["temperature"] == 0.1 and call.parameters["tools"]


def test_chat_n_greater_than_one_keeps_every_choice():
    body = {"model": "m", "choices": [{"index": i, "message": {"content": f"answer {i}"}, "finish_reason": "stop"} for i in range(3)]}
    call = openai.parse("/v1/chat/completions", {"model": "m", "n": 3}, json.dumps(body).encode(), 200, False)
    assert call.output["text"] == "answer 0"
    assert [c["text"] for c in call.output["choices"]] == ["answer 0", "answer 1", "answer 2"]


def test_chat_stream_merges_tool_call_fragments_and_reads_usage():
    base = {"model": "gpt-4o", "object": "chat.completion.chunk"}
    stream = sse(
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [
            {"index": 0, "id": "call_a", "function": {"name": "lookup", "arguments": ""}}]}}]},
        {**base, "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"q\": "}}]}}]},
        {**base, "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "\"x\"}"}}]}}]},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {**base, "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}},
        {**base, "choices": [], "usage": None},  # a null usage after the real one must not erase it
        "[DONE]")
    call = openai.parse("/v1/chat/completions", {"model": "gpt-4o", "stream": True}, stream, 200, True)
    assert call.output["tool_calls"] == [{"id": "call_a", "name": "lookup", "arguments": {"q": "x"}}]
    assert call.finish_reason == "tool_calls"
    assert (call.usage.prompt_tokens, call.usage.completion_tokens) == (9, 4)
    assert call.first_token_offset == 0
    assert call.events == 6


def test_chat_stream_error_event_and_first_token_offset():
    first = sse({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
    stream = first + sse({"choices": [{"index": 0, "delta": {"content": "Hi"}}]},
                         {"error": {"message": "overloaded", "type": "server_error"}})
    call = openai.parse("/v1/chat/completions", {}, stream, 200, True)
    assert call.output["text"] == "Hi"
    assert call.first_token_offset == len(first)
    assert call.error["message"] == "overloaded"


def test_groq_usage_under_x_groq():
    stream = sse({"choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}],
                  "x_groq": {"usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}}, "[DONE]")
    assert openai.parse("/openai/v1/chat/completions", {}, stream, 200, True).usage.total_tokens == 4


def test_error_body():
    body = json.dumps({"error": {"message": "Invalid model", "type": "invalid_request_error", "code": "model_not_found"}})
    call = openai.parse("/v1/chat/completions", {"model": "nope"}, body.encode(), 404, False)
    assert call.error == {"type": "invalid_request_error", "message": "Invalid model", "code": "model_not_found",
                          "param": None, "status_code": 404}


def test_embeddings_keep_shape_not_vectors():
    body = {"model": "text-embedding-3-small", "data": [{"embedding": [0.1] * 1536}, {"embedding": [0.2] * 1536}],
            "usage": {"prompt_tokens": 8, "total_tokens": 8}}
    call = openai.parse("/v1/embeddings", {"model": "text-embedding-3-small", "input": ["a", "b"]},
                        json.dumps(body).encode(), 200, False)
    assert call.output == {"embeddings": 2, "dimensions": 1536}
    assert "0.1" not in json.dumps(call.response_body)
    assert call.usage.prompt_tokens == 8


def test_legacy_completions_stream():
    stream = sse({"model": "gpt-3.5-turbo-instruct", "choices": [{"index": 0, "text": "Hel"}]},
                 {"model": "gpt-3.5-turbo-instruct", "choices": [{"index": 0, "text": "lo", "finish_reason": "length"}]},
                 "[DONE]")
    call = openai.parse("/v1/completions", {"prompt": "Say hi", "stream": True}, stream, 200, True)
    assert call.endpoint == "completions" and call.output["text"] == "Hello" and call.finish_reason == "length"
    assert call.messages == [{"role": "user", "content": "Say hi"}]


def test_responses_api_plain_and_streamed():
    doc = {"model": "gpt-4.1", "status": "completed", "output": [
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "thinking"}]},
        {"type": "message", "content": [{"type": "output_text", "text": "Done."}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}],
        "usage": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15,
                  "input_tokens_details": {"cached_tokens": 2}, "output_tokens_details": {"reasoning_tokens": 3}}}
    call = openai.parse("/v1/responses", {"model": "gpt-4.1", "input": "hi", "instructions": "be nice"},
                        json.dumps(doc).encode(), 200, False)
    assert call.output == {"text": "Done.", "tool_calls": [{"id": "c1", "name": "f", "arguments": {}}], "reasoning": "thinking"}
    assert call.finish_reason == "tool_calls"
    assert (call.usage.prompt_tokens, call.usage.cached_tokens, call.usage.reasoning_tokens) == (10, 2, 3)
    assert call.messages == [{"role": "system", "content": "be nice"}, {"role": "user", "content": "hi"}]
    stream = (b"event: response.created\ndata: " + json.dumps({"type": "response.created", "response": {"model": "gpt-4.1"}}).encode() + b"\n\n"
              + b"event: response.output_text.delta\ndata: " + json.dumps({"delta": "Do"}).encode() + b"\n\n"
              + b"event: response.completed\ndata: " + json.dumps({"response": {**doc, "status": "incomplete",
                                                                              "incomplete_details": {"reason": "max_output_tokens"}}}).encode() + b"\n\n")
    call = openai.parse("/v1/responses", {"model": "gpt-4.1", "stream": True}, stream, 200, True)
    assert call.finish_reason == "length" and call.usage.total_tokens == 15 and call.first_token_offset is not None


def test_garbage_never_raises():
    for body in (b"", b"\xff\xfe\x00", b"{not json", b"[1,2,3]", b'{"choices": "nope", "usage": "x"}',
                 b"data: {\"choices\": [{\"delta\": 5}]}\n\n", b"data: [[[[\n\n"):
        for streamed in (False, True):
            for path in ("/v1/chat/completions", "/v1/responses", "/v1/embeddings", "/v1/completions"):
                openai.parse(path, {"messages": "wrong type", "model": 5}, body, 200, streamed)
    assert openai.parse("/v1/models", {}, b"{}", 200, False) is None


def test_legacy_function_call():
    body = {"model": "gpt-3.5-turbo", "choices": [{"index": 0, "finish_reason": "function_call", "message": {
        "role": "assistant", "content": None, "function_call": {"name": "get_current_weather", "arguments": "{\"location\": \"Boston\"}"}}}]}
    call = openai.parse("/v1/chat/completions", {}, json.dumps(body).encode(), 200, False)
    assert call.output["tool_calls"] == [{"id": None, "name": "get_current_weather", "arguments": {"location": "Boston"}}]
    assert call.finish_reason == "tool_calls" and call.finish_reason_raw == "function_call"


def test_long_streams_assemble_whole():
    piece = sse({"choices": [{"index": 0, "delta": {"content": "word "}}]})
    call = openai.parse("/v1/chat/completions", {}, piece * 20_000, 200, True)
    assert call.output["text"] == "word " * 20_000 and call.events == 20_000


def test_embeddings_error_page_is_not_mistaken_for_a_result():
    call = openai.parse("/v1/embeddings", {"model": "m"}, b"<html>502</html>", 502, False)
    assert call.response_body is None and call.output == {}
