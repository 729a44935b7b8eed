"""Every provider's official SDK (or plain HTTP for Ollama) through the real proxy process.

One module-scoped stack: the mock upstream speaks OpenAI (chat, Responses, embeddings, legacy
completions; also as Groq under /openai and as Ollama's /v1), Anthropic, Gemini and Ollama's
native API; the proxy is pointed at it for every route. Each test makes one call, then reads the
stored span back through the dashboard's JSON API and checks it field by field against what the
mock sent (token counts are deterministic: prompt = 3 + input words, see mock_upstream).
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Iterator

import anthropic
import httpx2
import openai
import pytest
import requests
from genai_prices import Usage as PriceUsage, calc_price
from google import genai
from google.genai import errors as genai_errors, types

from tests.e2e.conftest import Stack, start_stack
from tests.support.mock_upstream import (
    CACHE_CREATION_TOKENS, CACHE_READ_TOKENS, EMBEDDING_DIMENSIONS, JSON_REPLY, REPLY_TEXT,
    REPLY_WORDS, STREAM_ERROR_MESSAGE, THINKING_TEXT, THINKING_WORDS, TOOL_ARGUMENT_FRAGMENTS,
    TOOL_ARGUMENTS, MockUpstream,
)

pytestmark = pytest.mark.e2e

DELAY = 0.02  # seconds between chunks that carry output
OPENAI_KEY = "sk-canary-" + uuid.uuid4().hex
ANTHROPIC_KEY = "sk-ant-canary-" + uuid.uuid4().hex
GEMINI_KEY = "AIzaCanary" + uuid.uuid4().hex
GROQ_KEY = "gsk_canary" + uuid.uuid4().hex
REPLY = len(REPLY_WORDS)  # completion tokens of a text answer
TOOL = len(TOOL_ARGUMENT_FRAGMENTS)  # completion tokens of a tool call
THINK = len(THINKING_WORDS)  # reasoning tokens
OPENAI_TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"},
                                                    "unit": {"type": "string"}},
                   "required": ["location"]}}}]


def prompt(*texts: str) -> int:
    """The mock's prompt count: 3 + the words of the input."""
    return 3 + sum(len(text.split()) for text in texts)


# -- the stack and the clients -----------------------------------------------------------------
@pytest.fixture(scope="module")
def providers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    upstream = MockUpstream(chunk_delay=DELAY).start()
    running = start_stack(tmp_path_factory.mktemp("providers"), upstream,
                          UPSTREAM_ANTHROPIC=upstream.url, UPSTREAM_GEMINI=upstream.url,
                          UPSTREAM_OLLAMA=upstream.url, UPSTREAM_GROQ=upstream.url + "/openai")
    yield running
    running.proxy.stop()
    running.dashboard.stop()
    upstream.stop()


class Sent:
    """The requests an SDK put on the wire (an HTTP client event hook), to compare with the mock's.

    The installed openai, anthropic and google-genai SDKs all run on ``httpx2`` (anthropic
    rejects an ``httpx.Client``)."""

    def __init__(self) -> None:
        self.requests: list[Any] = []

    def hook(self, request: Any) -> None:
        request.read()
        self.requests.append(request)

    @property
    def body(self) -> bytes:
        return self.requests[-1].content

    def client(self) -> httpx2.Client:
        return httpx2.Client(event_hooks={"request": [self.hook]}, timeout=20)


def new_marker() -> str:
    return uuid.uuid4().hex


def openai_client(stack: Stack, marker: str, sent: Sent | None = None, path: str = "/v1",
                  key: str = OPENAI_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.proxy.url + path, api_key=key, max_retries=0, timeout=20,
                         default_headers={"X-Trace-Marker": marker},
                         http_client=(sent or Sent()).client())


def anthropic_client(stack: Stack, marker: str, sent: Sent | None = None) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stack.proxy.url, api_key=ANTHROPIC_KEY, max_retries=0,
                               timeout=20, default_headers={"X-Trace-Marker": marker},
                               http_client=(sent or Sent()).client())


def gemini_client(stack: Stack, marker: str, sent: Sent | None = None) -> genai.Client:
    return genai.Client(api_key=GEMINI_KEY, http_options=types.HttpOptions(
        base_url=stack.proxy.url, headers={"X-Trace-Marker": marker}, timeout=20_000,
        httpx_client=(sent or Sent()).client()))


def find(stack: Stack, marker: str) -> dict:
    return stack.span_where(lambda s: (s.get("attributes", {}).get("custom") or {}).get("marker") == marker)


# -- assertions shared by every test -----------------------------------------------------------
def check(span: dict, **expected: Any) -> dict:
    """Each named attribute has exactly this value (None: absent or null)."""
    attrs = span["attributes"]
    wrong = {key: (attrs.get(key), value) for key, value in expected.items() if attrs.get(key) != value}
    assert not wrong, f"attributes differ (stored, expected): {wrong}"
    return attrs


def check_secrets(span: dict, *secrets: str) -> None:
    dumped = json.dumps(span)
    for secret in secrets:
        assert secret not in dumped, "an API key reached storage"


def check_forwarded(stack: Stack, path_part: str, sent: Sent) -> Any:
    """The upstream got the SDK's body byte for byte, and none of the tracing headers."""
    received = stack.upstream.last(path_part)
    assert received.body == sent.body
    assert not any(name.startswith("x-trace-") for name in received.headers)
    return received


def check_timing(span: dict) -> None:
    """The first output came at least one chunk delay after the request, well before the end."""
    attrs = span["attributes"]
    assert attrs["stream"] is True
    assert DELAY * 1000 * 0.9 <= attrs["ttft_ms"] < span["duration"], (attrs["ttft_ms"], span["duration"])


def check_cost(attrs: dict) -> None:
    assert isinstance(attrs["estimated_cost"], float) and attrs["estimated_cost"] > 0
    assert attrs["cost_known"] is True


def read_stream(response: requests.Response) -> tuple[bytes, Exception | None]:
    """Every byte the client got, and the error that ended the stream early, if any."""
    data = bytearray()
    try:
        for chunk in response.iter_content(chunk_size=None):
            data += chunk
    except requests.exceptions.RequestException as exc:  # ChunkedEncodingError and the like
        return bytes(data), exc
    return bytes(data), None


# == OpenAI ====================================================================================
def test_openai_chat_tool_call(providers):
    marker, sent = new_marker(), Sent()
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    reply = openai_client(providers, marker, sent).chat.completions.create(
        model="gpt-4o-mini-tools", messages=messages, tools=OPENAI_TOOLS, tool_choice="auto")
    call = reply.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == TOOL_ARGUMENTS

    received = check_forwarded(providers, "/chat/completions", sent)
    assert received.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    span = find(providers, marker)
    assert span["status"] == "success" and span["operation"] == "chat.completions.create"
    attrs = check(span, provider="openai", endpoint="chat", request_model="gpt-4o-mini-tools",
                  model="gpt-4o-mini-2024-07-18", response_model="gpt-4o-mini-2024-07-18",
                  prompt_tokens=prompt("What is the weather in Paris?"), completion_tokens=TOOL,
                  total_tokens=prompt("What is the weather in Paris?") + TOOL, cached_tokens=0,
                  reasoning_tokens=0, usage_estimated=False, finish_reason="tool_calls",
                  finish_reason_raw="tool_calls", http_status=200, request_id="req_mock_1",
                  stream=False)
    check_cost(attrs)
    assert span["request"]["messages"] == messages
    assert span["request"]["parameters"]["tools"] == OPENAI_TOOLS
    assert span["response"]["output"]["tool_calls"] == [
        {"id": "call_mock_1", "name": "get_weather", "arguments": TOOL_ARGUMENTS}]
    assert "text" not in span["response"]["output"]
    assert span["response"]["body"] == json.loads(received.sent)
    assert span["response"]["rate_limits"]["x-ratelimit-remaining-requests"] == "4999"
    assert span["request"]["headers"]["authorization"] == "[redacted]"
    check_secrets(span, OPENAI_KEY)


def test_openai_chat_tool_call_streamed(providers):
    marker = new_marker()
    stream = openai_client(providers, marker).chat.completions.create(
        model="gpt-4o-mini-tools", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Weather in Paris please"}], tools=OPENAI_TOOLS)
    arguments, name = "", None
    for chunk in stream:
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            name = call.function.name or name
            arguments += call.function.arguments or ""
    assert name == "get_weather" and json.loads(arguments) == TOOL_ARGUMENTS

    span = find(providers, marker)
    attrs = check(span, provider="openai", endpoint="chat", request_model="gpt-4o-mini-tools",
                  model="gpt-4o-mini-2024-07-18", prompt_tokens=prompt("Weather in Paris please"),
                  completion_tokens=TOOL, total_tokens=prompt("Weather in Paris please") + TOOL,
                  usage_estimated=False, finish_reason="tool_calls", finish_reason_raw="tool_calls",
                  http_status=200, request_id="req_mock_stream")
    check_timing(span)
    check_cost(attrs)
    assert span["response"]["output"]["tool_calls"] == [
        {"id": "call_mock_1", "name": "get_weather", "arguments": TOOL_ARGUMENTS}]
    check_secrets(span, OPENAI_KEY)


def test_openai_chat_n_choices_and_json_mode(providers):
    marker = new_marker()
    reply = openai_client(providers, marker).chat.completions.create(
        model="gpt-4o-mini", n=3, response_format={"type": "json_object"},
        messages=[{"role": "user", "content": "Answer in JSON"}])
    assert [c.message.content for c in reply.choices] == [JSON_REPLY] * 3

    span = find(providers, marker)
    pieces = 3  # JSON_REPLY_PIECES
    check(span, prompt_tokens=prompt("Answer in JSON"), completion_tokens=3 * pieces,
          total_tokens=prompt("Answer in JSON") + 3 * pieces, finish_reason="stop",
          finish_reason_raw="stop", usage_estimated=False)
    output = span["response"]["output"]
    assert output["text"] == JSON_REPLY
    assert [c["index"] for c in output["choices"]] == [0, 1, 2]
    assert all(c["text"] == JSON_REPLY and c["finish_reason"] == "stop" for c in output["choices"])
    assert span["request"]["parameters"]["n"] == 3
    assert span["request"]["parameters"]["response_format"] == {"type": "json_object"}


def test_openai_chat_reasoning_and_cached_tokens(providers):
    marker = new_marker()
    reply = openai_client(providers, marker).chat.completions.create(
        model="o4-mini-think-cache", reasoning_effort="low",
        messages=[{"role": "user", "content": "Think then answer"}])
    assert reply.usage.completion_tokens_details.reasoning_tokens == THINK

    span = find(providers, marker)
    prompt_tokens = prompt("Think then answer") + CACHE_READ_TOKENS
    attrs = check(span, model="o4-mini-2025-04-16", prompt_tokens=prompt_tokens,
                  completion_tokens=REPLY + THINK, total_tokens=prompt_tokens + REPLY + THINK,
                  cached_tokens=CACHE_READ_TOKENS, reasoning_tokens=THINK, usage_estimated=False)
    check_cost(attrs)
    assert span["request"]["parameters"]["reasoning_effort"] == "low"


def test_openai_unknown_model_has_no_price(providers):
    marker = new_marker()
    openai_client(providers, marker).chat.completions.create(
        model="mystery-model-x", messages=[{"role": "user", "content": "hello"}])
    attrs = find(providers, marker)["attributes"]
    assert attrs["model"] == "mystery-model-x" and attrs["prompt_tokens"] == prompt("hello")
    assert "estimated_cost" in attrs and attrs["estimated_cost"] is None
    assert attrs["cost_known"] is False


def test_openai_rate_limit_error(providers):
    marker = new_marker()
    with pytest.raises(openai.RateLimitError) as caught:
        openai_client(providers, marker).chat.completions.create(
            model="gpt-4o-mini-error-429", messages=[{"role": "user", "content": "again"}])
    assert caught.value.status_code == 429

    span = find(providers, marker)
    assert span["status"] == "error"
    check(span, http_status=429, request_id="req_mock_error", request_model="gpt-4o-mini-error-429",
          model="gpt-4o-mini-error-429", prompt_tokens=None, usage_estimated=False)
    assert span["error"] == {"type": "invalid_request_error", "code": "mock_429", "param": None,
                             "message": "mock error 429 for gpt-4o-mini-error-429", "status_code": 429}
    assert span["response"]["rate_limits"]["retry-after"] == "1"
    assert span["response"]["rate_limits"]["x-ratelimit-remaining-requests"] == "0"
    check_secrets(span, OPENAI_KEY)


def test_openai_chat_error_inside_the_stream(providers):
    marker = new_marker()
    text = ""
    with pytest.raises(openai.APIError) as caught:
        for chunk in openai_client(providers, marker).chat.completions.create(
                model="gpt-4o-mini-stream-error", stream=True,
                messages=[{"role": "user", "content": "go"}]):
            text += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert STREAM_ERROR_MESSAGE in str(caught.value)
    assert text == "".join(REPLY_WORDS[:3])

    span = find(providers, marker)
    assert span["status"] == "error"
    check(span, http_status=200, stream=True, request_model="gpt-4o-mini-stream-error")
    assert span["error"]["type"] == "server_error"
    assert span["error"]["message"] == STREAM_ERROR_MESSAGE
    assert span["response"]["output"]["text"] == text


def test_openai_chat_cut_mid_stream_client_gets_what_was_sent(providers):
    """Raw HTTP: the client receives exactly the bytes the upstream sent before it hung up."""
    marker = new_marker()
    body = {"model": "gpt-4o-mini-cut", "stream": True, "messages": [{"role": "user", "content": "go"}]}
    response = requests.post(providers.proxy.url + "/v1/chat/completions", json=body, stream=True,
                             headers={"Authorization": f"Bearer {OPENAI_KEY}", "X-Trace-Marker": marker},
                             timeout=20)
    assert response.status_code == 200
    got, error = read_stream(response)
    received = providers.upstream.last("/chat/completions")
    assert received.json() == body
    assert error is not None, "the cut must reach the client as a broken stream"
    assert got == bytes(received.sent)

    span = find(providers, marker)
    assert span["status"] == "error"
    assert span["error"]["type"] == "upstream_disconnected"
    check(span, http_status=200, stream=True, usage_estimated=True, finish_reason=None)
    assert span["response"]["output"]["text"] == "".join(REPLY_WORDS[:4])
    check_secrets(span, OPENAI_KEY)


def test_openai_responses(providers):
    marker, sent = new_marker(), Sent()
    reply = openai_client(providers, marker, sent).responses.create(
        model="gpt-4o-mini", instructions="Be brief.", input="Say the pangram", max_output_tokens=64)
    assert reply.output_text == REPLY_TEXT

    received = check_forwarded(providers, "/responses", sent)
    span = find(providers, marker)
    assert span["operation"] == "responses.create"
    tokens = prompt("Be brief.", "Say the pangram")
    attrs = check(span, provider="openai", endpoint="responses", request_model="gpt-4o-mini",
                  model="gpt-4o-mini-2024-07-18", prompt_tokens=tokens, completion_tokens=REPLY,
                  total_tokens=tokens + REPLY, cached_tokens=0, reasoning_tokens=0,
                  usage_estimated=False, finish_reason="stop", finish_reason_raw="completed",
                  max_tokens=64, http_status=200, request_id="req_mock_responses")
    check_cost(attrs)
    assert span["request"]["messages"] == [{"role": "system", "content": "Be brief."},
                                           {"role": "user", "content": "Say the pangram"}]
    assert span["response"]["output"] == {"text": REPLY_TEXT}
    assert span["response"]["body"] == json.loads(received.sent)
    check_secrets(span, OPENAI_KEY)


def test_openai_responses_streamed(providers):
    marker = new_marker()
    text, final = "", None
    for event in openai_client(providers, marker).responses.create(
            model="gpt-4o-mini", input="Stream the pangram", stream=True):
        if event.type == "response.output_text.delta":
            text += event.delta
        elif event.type == "response.completed":
            final = event.response
    assert text == REPLY_TEXT and final.usage.output_tokens == REPLY

    span = find(providers, marker)
    attrs = check(span, endpoint="responses", model="gpt-4o-mini-2024-07-18",
                  prompt_tokens=prompt("Stream the pangram"), completion_tokens=REPLY,
                  total_tokens=prompt("Stream the pangram") + REPLY, usage_estimated=False,
                  finish_reason="stop", finish_reason_raw="completed",
                  request_id="req_mock_responses_stream")
    check_timing(span)
    check_cost(attrs)
    assert span["response"]["output"]["text"] == REPLY_TEXT


def test_openai_responses_tool_call_streamed(providers):
    marker = new_marker()
    tools = [{"type": "function", "name": "get_weather", "description": "Weather",
              "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}]
    arguments = ""
    for event in openai_client(providers, marker).responses.create(
            model="gpt-4o-mini-tools", input="Weather in Paris?", tools=tools, stream=True):
        if event.type == "response.function_call_arguments.delta":
            arguments += event.delta
    assert json.loads(arguments) == TOOL_ARGUMENTS

    span = find(providers, marker)
    check(span, endpoint="responses", prompt_tokens=prompt("Weather in Paris?"),
          completion_tokens=TOOL, usage_estimated=False, finish_reason="tool_calls",
          finish_reason_raw="completed")
    assert span["response"]["output"]["tool_calls"] == [
        {"id": "call_mock_1", "name": "get_weather", "arguments": TOOL_ARGUMENTS}]
    check_timing(span)


def test_openai_responses_reasoning(providers):
    marker = new_marker()
    reply = openai_client(providers, marker).responses.create(
        model="o4-mini-think", input="Think first", reasoning={"effort": "low", "summary": "auto"})
    assert reply.output_text == REPLY_TEXT

    span = find(providers, marker)
    attrs = check(span, model="o4-mini-2025-04-16", prompt_tokens=prompt("Think first"),
                  completion_tokens=REPLY + THINK, reasoning_tokens=THINK,
                  total_tokens=prompt("Think first") + REPLY + THINK)
    check_cost(attrs)
    assert span["response"]["output"] == {"text": REPLY_TEXT, "reasoning": THINKING_TEXT}


def test_openai_responses_error_event_inside_the_stream(providers):
    marker = new_marker()
    text = ""
    with pytest.raises(openai.APIError):
        for event in openai_client(providers, marker).responses.create(
                model="gpt-4o-mini-stream-error", input="go", stream=True):
            if event.type == "response.output_text.delta":
                text += event.delta
    assert text == "".join(REPLY_WORDS[:3])

    span = find(providers, marker)
    assert span["status"] == "error"
    assert span["error"]["type"] == "server_error"
    assert span["error"]["message"] == STREAM_ERROR_MESSAGE
    assert span["response"]["output"]["text"] == text


def test_openai_responses_error_status(providers):
    marker = new_marker()
    with pytest.raises(openai.BadRequestError):
        openai_client(providers, marker).responses.create(model="gpt-4o-mini-error-400", input="x")
    span = find(providers, marker)
    assert span["status"] == "error" and span["operation"] == "responses.create"
    check(span, http_status=400, request_model="gpt-4o-mini-error-400")
    assert span["error"]["message"] == "mock error 400 for gpt-4o-mini-error-400"
    assert span["error"]["status_code"] == 400


def test_openai_embeddings_sdk_default_base64(providers):
    """The SDK asks for base64 vectors by default: the span still knows their size."""
    marker, sent = new_marker(), Sent()
    reply = openai_client(providers, marker, sent).embeddings.create(
        model="text-embedding-3-small", input=["first text here", "second"])
    assert [len(item.embedding) for item in reply.data] == [EMBEDDING_DIMENSIONS] * 2

    received = check_forwarded(providers, "/embeddings", sent)
    assert received.json()["encoding_format"] == "base64"
    span = find(providers, marker)
    assert span["operation"] == "embeddings.create"
    attrs = check(span, provider="openai", endpoint="embeddings", model="text-embedding-3-small",
                  prompt_tokens=4, total_tokens=4, completion_tokens=None, usage_estimated=False)
    check_cost(attrs)
    assert span["request"]["messages"] == [{"role": "input", "content": ["first text here", "second"]}]
    assert span["response"]["output"] == {"embeddings": 2, "dimensions": EMBEDDING_DIMENSIONS}
    vector = json.loads(received.sent)["data"][0]["embedding"]
    assert vector not in json.dumps(span)  # the vectors themselves are never stored


def test_openai_embeddings_as_floats(providers):
    marker = new_marker()
    openai_client(providers, marker).embeddings.create(
        model="text-embedding-3-small", input="one two three", encoding_format="float")
    span = find(providers, marker)
    check(span, endpoint="embeddings", prompt_tokens=3, total_tokens=3)
    assert span["response"]["output"] == {"embeddings": 1, "dimensions": EMBEDDING_DIMENSIONS}
    assert "0.71" not in json.dumps(span["response"])


def test_openai_legacy_completions(providers):
    marker, sent = new_marker(), Sent()
    reply = openai_client(providers, marker, sent).completions.create(
        model="gpt-3.5-turbo-instruct", prompt="Complete the pangram", max_tokens=20)
    assert reply.choices[0].text == REPLY_TEXT

    check_forwarded(providers, "/completions", sent)
    span = find(providers, marker)
    assert span["operation"] == "completions.create"
    attrs = check(span, endpoint="completions", model="gpt-3.5-turbo-instruct",
                  prompt_tokens=prompt("Complete the pangram"), completion_tokens=REPLY,
                  total_tokens=prompt("Complete the pangram") + REPLY, finish_reason="stop",
                  finish_reason_raw="stop", max_tokens=20, usage_estimated=False)
    check_cost(attrs)
    assert span["request"]["messages"] == [{"role": "user", "content": "Complete the pangram"}]
    assert span["response"]["output"]["text"] == REPLY_TEXT


def test_openai_legacy_completions_streamed(providers):
    marker = new_marker()
    text = "".join(c.choices[0].text for c in openai_client(providers, marker).completions.create(
        model="gpt-3.5-turbo-instruct", prompt="Stream it", stream=True,
        stream_options={"include_usage": True}) if c.choices)
    assert text == REPLY_TEXT
    span = find(providers, marker)
    attrs = check(span, endpoint="completions", prompt_tokens=prompt("Stream it"),
                  completion_tokens=REPLY, usage_estimated=False, finish_reason="stop",
                  request_id="req_mock_completion_stream")
    assert span["operation"] == "completions.create"
    check_timing(span)
    check_cost(attrs)
    assert span["response"]["output"]["text"] == REPLY_TEXT


def test_groq_prefixed_route_with_usage_under_x_groq(providers):
    marker, sent = new_marker(), Sent()
    text = "".join(c.choices[0].delta.content or "" for c in openai_client(
        providers, marker, sent, path="/groq/v1", key=GROQ_KEY).chat.completions.create(
        model="llama-3.1-8b-instant", stream=True, messages=[{"role": "user", "content": "Hi Groq"}])
        if c.choices)
    assert text == REPLY_TEXT

    received = check_forwarded(providers, "/openai/v1/chat/completions", sent)
    assert received.path == "/openai/v1/chat/completions"
    span = find(providers, marker)
    attrs = check(span, provider="groq", endpoint="chat", model="llama-3.1-8b-instant",
                  prompt_tokens=prompt("Hi Groq"), completion_tokens=REPLY,
                  total_tokens=prompt("Hi Groq") + REPLY, usage_estimated=False,
                  finish_reason="stop", request_id="req_mock_groq")
    check_cost(attrs)
    check_timing(span)
    assert span["request"]["path"] == "/groq/v1/chat/completions"
    check_secrets(span, GROQ_KEY)


def test_ollama_openai_compatible_endpoint(providers):
    marker = new_marker()
    client = openai_client(providers, marker, path="/ollama/v1", key="ollama")
    reply = client.chat.completions.create(model="llama3.2-tools", tools=OPENAI_TOOLS,
                                           messages=[{"role": "user", "content": "Weather?"}])
    assert json.loads(reply.choices[0].message.tool_calls[0].function.arguments) == TOOL_ARGUMENTS
    assert providers.upstream.last("/chat/completions").path == "/v1/chat/completions"

    span = find(providers, marker)
    check(span, provider="ollama", endpoint="chat", model="llama3.2", prompt_tokens=prompt("Weather?"),
          completion_tokens=TOOL, estimated_cost=0.0, finish_reason="tool_calls")
    assert span["response"]["output"]["tool_calls"][0]["arguments"] == TOOL_ARGUMENTS


def test_ollama_openai_compatible_endpoint_streamed(providers):
    marker = new_marker()
    text = "".join(c.choices[0].delta.content or "" for c in openai_client(
        providers, marker, path="/ollama/v1", key="ollama").chat.completions.create(
        model="llama3.2", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Stream locally"}]) if c.choices)
    assert text == REPLY_TEXT
    span = find(providers, marker)
    check(span, provider="ollama", endpoint="chat", stream=True, model="llama3.2",
          prompt_tokens=prompt("Stream locally"), completion_tokens=REPLY, usage_estimated=False,
          estimated_cost=0.0, finish_reason="stop", finish_reason_raw="stop")
    check_timing(span)
    assert span["response"]["output"]["text"] == REPLY_TEXT


# == Anthropic =================================================================================
def test_anthropic_message(providers):
    marker, sent = new_marker(), Sent()
    reply = anthropic_client(providers, marker, sent).messages.create(
        model="claude-3-5-haiku-latest", max_tokens=128, extra_body={"temperature": 0.5},
        system="Be brief.",
        messages=[{"role": "user", "content": "Say the pangram"}])
    assert reply.content[0].text == REPLY_TEXT

    received = check_forwarded(providers, "/v1/messages", sent)
    # anthropic 2.x sends the key as a bearer token (1.x used x-api-key): forwarded as sent
    key_header = "x-api-key" if "x-api-key" in received.headers else "authorization"
    assert received.headers[key_header] in (ANTHROPIC_KEY, f"Bearer {ANTHROPIC_KEY}")
    span = find(providers, marker)
    assert span["status"] == "success" and span["operation"] == "messages.create"
    tokens = prompt("Be brief.", "Say the pangram")
    attrs = check(span, provider="anthropic", endpoint="messages",
                  request_model="claude-3-5-haiku-latest", model="claude-3-5-haiku-20241022",
                  prompt_tokens=tokens, completion_tokens=REPLY, total_tokens=tokens + REPLY,
                  cached_tokens=0, cache_creation_tokens=0, usage_estimated=False,
                  finish_reason="stop", finish_reason_raw="end_turn", temperature=0.5,
                  max_tokens=128, http_status=200, request_id="req_mock_anthropic", stream=False)
    check_cost(attrs)
    assert span["request"]["messages"] == [{"role": "system", "content": "Be brief."},
                                           {"role": "user", "content": "Say the pangram"}]
    assert span["response"]["output"] == {"text": REPLY_TEXT}
    assert span["response"]["body"] == json.loads(received.sent)
    assert span["response"]["rate_limits"]["anthropic-ratelimit-requests-remaining"] == "3999"
    assert span["request"]["headers"][key_header] == "[redacted]"
    check_secrets(span, ANTHROPIC_KEY)


def test_anthropic_stream_bytes_reach_the_client_unchanged(providers):
    marker = new_marker()
    body = {"model": "claude-3-5-haiku-latest", "max_tokens": 64, "stream": True,
            "messages": [{"role": "user", "content": "Stream the pangram"}]}
    response = requests.post(providers.proxy.url + "/v1/messages", json=body, stream=True, timeout=20,
                             headers={"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01",
                                      "X-Trace-Marker": marker})
    got, error = read_stream(response)
    received = providers.upstream.last("/v1/messages")
    assert error is None and got == bytes(received.sent)
    assert response.headers["request-id"] == "req_mock_anthropic"
    assert b"event: ping" in got and got.rstrip().endswith(b'{"type": "message_stop"}')

    span = find(providers, marker)
    attrs = check(span, endpoint="messages", stream=True, model="claude-3-5-haiku-20241022",
                  prompt_tokens=prompt("Stream the pangram"), completion_tokens=REPLY,
                  total_tokens=prompt("Stream the pangram") + REPLY, cached_tokens=0,
                  cache_creation_tokens=0, usage_estimated=False, finish_reason="stop",
                  finish_reason_raw="end_turn", request_id="req_mock_anthropic")
    check_timing(span)
    check_cost(attrs)
    assert span["response"]["output"] == {"text": REPLY_TEXT}
    assert span["response"]["events"] == got.count(b"data: ")
    check_secrets(span, ANTHROPIC_KEY)


def test_anthropic_tool_use_streamed_with_thinking(providers):
    marker = new_marker()
    tools = [{"name": "get_weather", "description": "Weather",
              "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}}}]
    with anthropic_client(providers, marker).messages.stream(
            model="claude-3-7-sonnet-latest-tools-think", max_tokens=2048, tools=tools,
            thinking={"type": "enabled", "budget_tokens": 1024},
            messages=[{"role": "user", "content": "Weather in Paris?"}]) as stream:
        final = stream.get_final_message()
    assert [block.type for block in final.content] == ["thinking", "tool_use"]
    assert final.content[1].input == TOOL_ARGUMENTS

    span = find(providers, marker)
    attrs = check(span, endpoint="messages", stream=True, model="claude-3-7-sonnet-20250219",
                  prompt_tokens=prompt("Weather in Paris?"), completion_tokens=TOOL + THINK,
                  total_tokens=prompt("Weather in Paris?") + TOOL + THINK, usage_estimated=False,
                  finish_reason="tool_calls", finish_reason_raw="tool_use")
    check_timing(span)
    check_cost(attrs)
    assert span["response"]["output"] == {
        "reasoning": THINKING_TEXT,
        "tool_calls": [{"id": "toolu_01Mock", "name": "get_weather", "arguments": TOOL_ARGUMENTS}]}
    assert span["request"]["parameters"]["thinking"] == {"type": "enabled", "budget_tokens": 1024}


def test_anthropic_tool_use_and_thinking_not_streamed(providers):
    marker = new_marker()
    reply = anthropic_client(providers, marker).messages.create(
        model="claude-3-5-haiku-latest-tools-think", max_tokens=256,
        tools=[{"name": "lookup", "input_schema": {"type": "object"}}],
        messages=[{"role": "user", "content": "Look it up"}])
    assert reply.stop_reason == "tool_use"
    span = find(providers, marker)
    check(span, completion_tokens=TOOL + THINK, finish_reason="tool_calls", finish_reason_raw="tool_use")
    assert span["response"]["output"] == {
        "reasoning": THINKING_TEXT,
        "tool_calls": [{"id": "toolu_01Mock", "name": "lookup", "arguments": TOOL_ARGUMENTS}]}


def test_anthropic_cache_tokens_are_recorded_and_priced(providers):
    marker = new_marker()
    reply = anthropic_client(providers, marker).beta.messages.create(
        model="claude-3-5-haiku-latest-cache", max_tokens=64, extra_query={"beta": "true"},
        messages=[{"role": "user", "content": "Use the cached context"}])
    assert reply.usage.cache_read_input_tokens == CACHE_READ_TOKENS
    assert providers.upstream.last("/v1/messages").path == "/v1/messages?beta=true"

    span = find(providers, marker)
    tokens = prompt("Use the cached context")  # Anthropic's input_tokens leave the cache out
    attrs = check(span, endpoint="messages", prompt_tokens=tokens, completion_tokens=REPLY,
                  total_tokens=tokens + REPLY, cached_tokens=CACHE_READ_TOKENS,
                  cache_creation_tokens=CACHE_CREATION_TOKENS, usage_estimated=False)
    assert span["request"]["path"] == "/v1/messages?beta=true"
    expected = calc_price(PriceUsage(input_tokens=tokens + CACHE_READ_TOKENS + CACHE_CREATION_TOKENS,
                                     output_tokens=REPLY, cache_read_tokens=CACHE_READ_TOKENS,
                                     cache_write_tokens=CACHE_CREATION_TOKENS),
                          model_ref="claude-3-5-haiku-20241022", provider_id="anthropic")
    assert attrs["estimated_cost"] == pytest.approx(float(expected.total_price))


def test_anthropic_overloaded_error(providers):
    marker = new_marker()
    with pytest.raises(anthropic.APIStatusError) as caught:
        anthropic_client(providers, marker).messages.create(
            model="claude-3-5-haiku-latest-error-529", max_tokens=16,
            messages=[{"role": "user", "content": "busy?"}])
    assert caught.value.status_code == 529

    span = find(providers, marker)
    assert span["status"] == "error"
    check(span, http_status=529, request_id="req_mock_anthropic_error", endpoint="messages",
          request_model="claude-3-5-haiku-latest-error-529", prompt_tokens=None)
    assert span["error"] == {"type": "overloaded_error", "status_code": 529,
                             "message": "mock error 529 for claude-3-5-haiku-latest-error-529",
                             "request_id": "req_mock_anthropic_error"}
    check_secrets(span, ANTHROPIC_KEY)


def test_anthropic_error_event_inside_the_stream(providers):
    marker = new_marker()
    text = ""
    with pytest.raises(anthropic.APIStatusError) as caught:
        with anthropic_client(providers, marker).messages.stream(
                model="claude-3-5-haiku-latest-stream-error", max_tokens=64,
                messages=[{"role": "user", "content": "go"}]) as stream:
            for piece in stream.text_stream:
                text += piece
    assert STREAM_ERROR_MESSAGE in str(caught.value)
    assert text == "".join(REPLY_WORDS[:3])

    span = find(providers, marker)
    assert span["status"] == "error"
    check(span, http_status=200, stream=True, finish_reason="error",
          finish_reason_raw="overloaded_error", prompt_tokens=prompt("go"))
    assert span["error"]["type"] == "overloaded_error"
    assert span["error"]["message"] == STREAM_ERROR_MESSAGE
    assert span["response"]["output"] == {"text": text}


def test_anthropic_cut_mid_stream(providers):
    marker = new_marker()
    text = ""
    with pytest.raises((anthropic.APIError, httpx2.HTTPError)):
        with anthropic_client(providers, marker).messages.stream(
                model="claude-3-5-haiku-latest-cut", max_tokens=64,
                messages=[{"role": "user", "content": "go"}]) as stream:
            for piece in stream.text_stream:
                text += piece
    assert text == "".join(REPLY_WORDS[:4])

    span = find(providers, marker)
    assert span["status"] == "error"
    assert span["error"]["type"] == "upstream_disconnected"
    check(span, http_status=200, stream=True, prompt_tokens=prompt("go"), finish_reason=None)
    assert span["response"]["output"] == {"text": text}


# == Gemini ====================================================================================
def test_gemini_generate_content(providers):
    marker, sent = new_marker(), Sent()
    reply = gemini_client(providers, marker, sent).models.generate_content(
        model="gemini-2.0-flash", contents="Say the pangram",
        config=types.GenerateContentConfig(system_instruction="Be brief.", temperature=0.2,
                                           max_output_tokens=64))
    assert reply.text == REPLY_TEXT

    received = check_forwarded(providers, ":generateContent", sent)
    assert received.path.endswith("/models/gemini-2.0-flash:generateContent")
    assert received.headers["x-goog-api-key"] == GEMINI_KEY
    span = find(providers, marker)
    assert span["status"] == "success" and span["operation"] == "generate_content"
    tokens = prompt("Be brief.", "Say the pangram")
    attrs = check(span, provider="gemini", endpoint="generate_content",
                  request_model="gemini-2.0-flash", model="gemini-2.0-flash",
                  prompt_tokens=tokens, completion_tokens=REPLY, total_tokens=tokens + REPLY,
                  usage_estimated=False, finish_reason="stop", finish_reason_raw="STOP",
                  temperature=0.2, max_tokens=64, http_status=200, stream=False)
    check_cost(attrs)
    assert span["request"]["messages"] == [{"role": "system", "content": "Be brief."},
                                           {"role": "user", "content": "Say the pangram"}]
    assert span["response"]["output"] == {"text": REPLY_TEXT}
    assert span["response"]["body"] == json.loads(received.sent)
    assert span["request"]["headers"]["x-goog-api-key"] == "[redacted]"
    check_secrets(span, GEMINI_KEY)


def test_gemini_streamed(providers):
    marker = new_marker()
    text = "".join(chunk.text or "" for chunk in gemini_client(providers, marker).models.generate_content_stream(
        model="gemini-2.0-flash", contents="Stream the pangram"))
    assert text == REPLY_TEXT
    assert providers.upstream.last(":streamGenerateContent").path.endswith(":streamGenerateContent?alt=sse")

    span = find(providers, marker)
    attrs = check(span, endpoint="generate_content", stream=True, model="gemini-2.0-flash",
                  prompt_tokens=prompt("Stream the pangram"), completion_tokens=REPLY,
                  total_tokens=prompt("Stream the pangram") + REPLY, usage_estimated=False,
                  finish_reason="stop", finish_reason_raw="STOP")
    check_timing(span)
    check_cost(attrs)
    assert span["response"]["output"] == {"text": REPLY_TEXT}
    assert span["response"]["events"] == REPLY
    check_secrets(span, GEMINI_KEY)


def test_gemini_function_call_streamed(providers):
    marker = new_marker()
    tool = types.Tool(function_declarations=[types.FunctionDeclaration(
        name="get_weather", description="Weather",
        parameters=types.Schema(type="OBJECT", properties={"location": types.Schema(type="STRING")}))])
    calls = [call for chunk in gemini_client(providers, marker).models.generate_content_stream(
        model="gemini-2.0-flash-tools", contents="Weather in Paris?",
        config=types.GenerateContentConfig(tools=[tool])) for call in (chunk.function_calls or [])]
    assert [(c.name, c.args) for c in calls] == [("get_weather", TOOL_ARGUMENTS)]

    span = find(providers, marker)
    check(span, model="gemini-2.0-flash", prompt_tokens=prompt("Weather in Paris?"),
          completion_tokens=TOOL, finish_reason="tool_calls", finish_reason_raw="STOP",
          usage_estimated=False)
    assert span["response"]["output"] == {
        "tool_calls": [{"id": None, "name": "get_weather", "arguments": TOOL_ARGUMENTS}]}
    check_timing(span)


def test_gemini_thoughts_and_cached_tokens(providers):
    marker = new_marker()
    reply = gemini_client(providers, marker).models.generate_content(
        model="gemini-2.5-flash-think-cache", contents="Think first",
        config=types.GenerateContentConfig(thinking_config=types.ThinkingConfig(include_thoughts=True)))
    assert reply.usage_metadata.thoughts_token_count == THINK

    span = find(providers, marker)
    tokens = prompt("Think first") + CACHE_READ_TOKENS  # Gemini's prompt count includes the cache
    attrs = check(span, model="gemini-2.5-flash", prompt_tokens=tokens, completion_tokens=REPLY,
                  reasoning_tokens=THINK, cached_tokens=CACHE_READ_TOKENS,
                  total_tokens=tokens + REPLY + THINK, usage_estimated=False)
    check_cost(attrs)
    assert span["response"]["output"] == {"text": REPLY_TEXT, "reasoning": THINKING_TEXT}
    sent_config = providers.upstream.last(":generateContent").json()["generationConfig"]
    assert span["request"]["parameters"]["thinking"] == sent_config["thinkingConfig"]


def test_gemini_key_in_query_is_redacted_and_stream_bytes_unchanged(providers):
    marker = new_marker()
    body = {"contents": [{"role": "user", "parts": [{"text": "Raw stream"}]}]}
    path = f"/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse&key={GEMINI_KEY}"
    response = requests.post(providers.proxy.url + path, json=body, stream=True, timeout=20,
                             headers={"X-Trace-Marker": marker})
    got, error = read_stream(response)
    received = providers.upstream.last(":streamGenerateContent")
    assert error is None and got == bytes(received.sent)
    assert received.path == path  # the key is forwarded as sent
    assert received.json() == body

    span = find(providers, marker)
    check(span, provider="gemini", stream=True, prompt_tokens=prompt("Raw stream"),
          completion_tokens=REPLY, finish_reason="stop")
    assert span["request"]["path"] == path.replace(GEMINI_KEY, "[redacted]")
    assert span["request"]["url"].endswith(path.replace(GEMINI_KEY, "[redacted]"))
    check_secrets(span, GEMINI_KEY)


def test_gemini_not_found_error(providers):
    marker = new_marker()
    with pytest.raises(genai_errors.ClientError) as caught:
        gemini_client(providers, marker).models.generate_content(
            model="gemini-2.0-flash-error-404", contents="anyone?")
    assert caught.value.code == 404

    span = find(providers, marker)
    assert span["status"] == "error"
    check(span, http_status=404, request_model="gemini-2.0-flash-error-404", prompt_tokens=None)
    assert span["error"] == {"type": "NOT_FOUND", "code": 404, "status_code": 404,
                             "message": "mock error 404 for models/gemini-2.0-flash-error-404"}
    check_secrets(span, GEMINI_KEY)


def test_gemini_error_inside_the_stream(providers):
    marker = new_marker()
    text = ""
    with pytest.raises(genai_errors.APIError):
        for chunk in gemini_client(providers, marker).models.generate_content_stream(
                model="gemini-2.0-flash-stream-error", contents="go"):
            text += chunk.text or ""
    assert text == "".join(REPLY_WORDS[:3])

    span = find(providers, marker)
    assert span["status"] == "error"
    check(span, http_status=200, stream=True, finish_reason="error", finish_reason_raw="INTERNAL")
    assert span["error"]["type"] == "INTERNAL" and span["error"]["message"] == STREAM_ERROR_MESSAGE
    assert span["response"]["output"] == {"text": text}


def test_gemini_cut_mid_stream(providers):
    marker = new_marker()
    text = ""
    with pytest.raises(httpx2.HTTPError):  # the SDK passes the broken stream on as is
        for chunk in gemini_client(providers, marker).models.generate_content_stream(
                model="gemini-2.0-flash-cut", contents="go"):
            text += chunk.text or ""
    assert text == "".join(REPLY_WORDS[:4])

    span = find(providers, marker)
    assert span["status"] == "error"
    assert span["error"]["type"] == "upstream_disconnected"
    check(span, http_status=200, stream=True, prompt_tokens=prompt("go"), completion_tokens=4,
          finish_reason=None)
    assert span["response"]["output"] == {"text": text}


def test_gemini_embeddings(providers):
    marker, sent = new_marker(), Sent()
    reply = gemini_client(providers, marker, sent).models.embed_content(
        model="gemini-embedding-001", contents=["first text", "second text"])
    assert [len(e.values) for e in reply.embeddings] == [EMBEDDING_DIMENSIONS] * 2

    check_forwarded(providers, ":batchEmbedContents", sent)
    span = find(providers, marker)
    assert span["status"] == "success" and span["operation"] == "batch_embed_contents"
    check(span, provider="gemini", endpoint="embeddings", model="gemini-embedding-001",
          prompt_tokens=None, estimated_cost=None)
    assert span["response"]["output"] == {"embeddings": 2, "dimensions": EMBEDDING_DIMENSIONS}
    assert span["request"]["messages"] == [{"role": "input", "content": ["first text", "second text"]}]
    check_secrets(span, GEMINI_KEY)


# == Ollama (native API, plain HTTP as ollama-python sends it) =================================
def ollama(stack: Stack, path: str, body: dict, marker: str, stream: bool = True) -> requests.Response:
    return requests.post(stack.proxy.url + path, data=json.dumps(body).encode(), stream=stream,
                         headers={"Content-Type": "application/json", "X-Trace-Marker": marker},
                         timeout=20)


def ndjson(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def test_ollama_chat_streams_by_default(providers):
    marker = new_marker()
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "Say the pangram"}],
            "options": {"temperature": 0.1, "num_predict": 64}}
    response = ollama(providers, "/api/chat", body, marker)
    got, error = read_stream(response)
    received = providers.upstream.last("/api/chat")
    assert error is None and got == bytes(received.sent)
    assert received.body == json.dumps(body).encode()
    lines = ndjson(got)
    assert "".join(line["message"]["content"] for line in lines) == REPLY_TEXT
    assert lines[-1]["done"] is True and response.headers["content-type"] == "application/x-ndjson"

    span = find(providers, marker)
    assert span["status"] == "success" and span["operation"] == "chat"
    check(span, provider="ollama", endpoint="chat", request_model="llama3.2", model="llama3.2",
          prompt_tokens=prompt("Say the pangram"), completion_tokens=REPLY,
          total_tokens=prompt("Say the pangram") + REPLY, usage_estimated=False,
          estimated_cost=0.0, finish_reason="stop", finish_reason_raw="stop", temperature=0.1,
          max_tokens=64, http_status=200, stream=True)
    check_timing(span)
    assert span["request"]["messages"] == body["messages"]
    assert span["request"]["parameters"]["stream"] is True
    assert span["response"]["output"] == {"text": REPLY_TEXT}


def test_ollama_chat_not_streamed(providers):
    marker = new_marker()
    body = {"model": "llama3.2", "stream": False, "messages": [{"role": "user", "content": "Once"}]}
    reply = ollama(providers, "/api/chat", body, marker, stream=False).json()
    assert reply["message"]["content"] == REPLY_TEXT and reply["eval_count"] == REPLY

    span = find(providers, marker)
    check(span, endpoint="chat", stream=False, prompt_tokens=prompt("Once"), completion_tokens=REPLY,
          estimated_cost=0.0, finish_reason="stop", usage_estimated=False)
    assert span["response"]["body"] == reply
    assert span["response"]["output"] == {"text": REPLY_TEXT}


def test_ollama_chat_tool_call_and_thinking(providers):
    marker = new_marker()
    body = {"model": "qwen3-tools-think", "think": True,
            "messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": OPENAI_TOOLS}
    got, error = read_stream(ollama(providers, "/api/chat", body, marker))
    assert error is None
    calls = [c for line in ndjson(got) for c in line["message"].get("tool_calls", [])]
    assert [(c["function"]["name"], c["function"]["arguments"]) for c in calls] == [("get_weather", TOOL_ARGUMENTS)]

    span = find(providers, marker)
    check(span, model="qwen3", prompt_tokens=prompt("Weather in Paris?"), completion_tokens=TOOL + THINK,
          finish_reason="tool_calls", finish_reason_raw="stop", estimated_cost=0.0)
    assert span["response"]["output"] == {
        "reasoning": THINKING_TEXT,
        "tool_calls": [{"id": "call_mock_1", "name": "get_weather", "arguments": TOOL_ARGUMENTS}]}
    assert span["request"]["parameters"]["reasoning"] is True
    check_timing(span)


def test_ollama_generate(providers):
    marker = new_marker()
    body = {"model": "llama3.2", "system": "Be brief.", "prompt": "Say the pangram", "stream": False}
    reply = ollama(providers, "/api/generate", body, marker, stream=False).json()
    assert reply["response"] == REPLY_TEXT

    span = find(providers, marker)
    assert span["operation"] == "generate"
    tokens = prompt("Be brief.", "Say the pangram")
    check(span, endpoint="generate", prompt_tokens=tokens, completion_tokens=REPLY,
          total_tokens=tokens + REPLY, estimated_cost=0.0, finish_reason="stop", stream=False)
    assert span["request"]["messages"] == [{"role": "system", "content": "Be brief."},
                                           {"role": "user", "content": "Say the pangram"}]
    assert span["response"]["body"]["context"] == f"[{tokens + REPLY} context tokens not stored]"


def test_ollama_generate_streamed(providers):
    marker = new_marker()
    got, error = read_stream(ollama(providers, "/api/generate", {"model": "llama3.2", "prompt": "go on"}, marker))
    assert error is None and "".join(line["response"] for line in ndjson(got)) == REPLY_TEXT
    span = find(providers, marker)
    check(span, endpoint="generate", stream=True, prompt_tokens=prompt("go on"), completion_tokens=REPLY,
          finish_reason="stop", estimated_cost=0.0)
    check_timing(span)
    assert span["response"]["output"] == {"text": REPLY_TEXT}


def test_ollama_embed(providers):
    marker = new_marker()
    reply = ollama(providers, "/api/embed", {"model": "all-minilm", "input": ["one two", "three"]},
                   marker, stream=False).json()
    assert len(reply["embeddings"]) == 2
    span = find(providers, marker)
    assert span["operation"] == "embed"
    check(span, provider="ollama", endpoint="embeddings", prompt_tokens=3, total_tokens=3,
          estimated_cost=0.0, stream=False)
    assert span["response"]["output"] == {"embeddings": 2, "dimensions": EMBEDDING_DIMENSIONS}


def test_ollama_model_not_found(providers):
    marker = new_marker()
    response = ollama(providers, "/api/chat", {"model": "nope-error-404", "messages": []}, marker,
                      stream=False)
    assert response.status_code == 404
    span = find(providers, marker)
    assert span["status"] == "error"
    check(span, http_status=404, request_model="nope-error-404", estimated_cost=0.0)
    assert span["error"] == {"type": "api_error", "status_code": 404,
                             "message": 'model "nope-error-404" not found, try pulling it first'}


def test_ollama_error_line_inside_the_stream(providers):
    marker = new_marker()
    got, error = read_stream(ollama(providers, "/api/chat", {
        "model": "llama3.2-stream-error", "messages": [{"role": "user", "content": "go"}]}, marker))
    assert error is None and ndjson(got)[-1] == {"error": STREAM_ERROR_MESSAGE}
    span = find(providers, marker)
    assert span["status"] == "error"
    check(span, http_status=200, stream=True, finish_reason="error", finish_reason_raw="error")
    assert span["error"]["message"] == STREAM_ERROR_MESSAGE
    assert span["response"]["output"] == {"text": "".join(REPLY_WORDS[:3])}


def test_ollama_cut_mid_stream(providers):
    marker = new_marker()
    got, error = read_stream(ollama(providers, "/api/chat", {
        "model": "llama3.2-cut", "messages": [{"role": "user", "content": "go"}]}, marker))
    received = providers.upstream.last("/api/chat")
    assert error is not None and got == bytes(received.sent)
    span = find(providers, marker)
    assert span["status"] == "error"
    assert span["error"]["type"] == "upstream_disconnected"
    check(span, http_status=200, stream=True, finish_reason=None, estimated_cost=0.0)
    assert span["response"]["output"] == {"text": "".join(REPLY_WORDS[:4])}


def test_ollama_model_list_is_a_plain_http_span(providers):
    marker = new_marker()
    reply = requests.get(providers.proxy.url + "/api/tags", headers={"X-Trace-Marker": marker}, timeout=20)
    assert reply.json()["models"][0]["name"] == "llama3.2:latest"
    span = find(providers, marker)
    assert span["status"] == "success" and span["operation"] == "GET /api/tags"
    check(span, provider="ollama", http_status=200)
    assert span["response"]["body"] == reply.json()
