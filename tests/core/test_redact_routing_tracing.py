from llmflow_core.redact import REDACTED, cap, redact_headers, redact_text, redact_url
from llmflow_core.routing import route_for_host, route_request
from llmflow_core.config import DEFAULT_UPSTREAMS
from llmflow_core.tracing import is_trace_header, normalise_trace_id, parse_traceparent, trace_context


def test_secret_headers_are_redacted_and_others_kept():
    headers = redact_headers([("Authorization", "Bearer sk-abc"), ("x-api-key", "sk-ant-1"),
                              ("X-Goog-Api-Key", "AIza1"), ("Cookie", "a=b"), ("api-key", "azure"),
                              ("Content-Type", "application/json"), ("Accept", "a"), ("accept", "b"),
                              ("X-Custom-Token", "t")])
    assert headers == {"authorization": REDACTED, "x-api-key": REDACTED, "x-goog-api-key": REDACTED,
                       "cookie": REDACTED, "api-key": REDACTED, "content-type": "application/json",
                       "accept": "a, b", "x-custom-token": REDACTED}


def test_query_keys_and_userinfo_are_redacted():
    url = redact_url("https://u:pw@generativelanguage.googleapis.com/v1beta/models/x:generateContent?key=AIzaSECRET&alt=sse")
    assert "AIzaSECRET" not in url and "pw" not in url
    assert "alt=sse" in url and "key=%5Bredacted%5D" in url or "key=[redacted]" in url


def test_key_shaped_text_is_redacted():
    assert "sk-live1234567890" not in redact_text("Incorrect API key provided: sk-live1234567890abc")
    assert redact_text("nothing secret here") == "nothing secret here"


def test_cap():
    assert cap(b"abcdef", 4) == (b"abcd", True)
    assert cap(b"abc", 4) == (b"abc", False)
    assert cap(b"abc", 0) == (b"abc", False)


def test_routes_from_sdk_default_paths():
    up = dict(DEFAULT_UPSTREAMS, vllm="http://gpu:8000/base")
    assert route_request("/v1/chat/completions", up).url == "https://api.openai.com/v1/chat/completions"
    assert route_request("/v1/messages?beta=true", up).name == "anthropic"
    assert route_request("/v1beta/models/gemini-2.0-flash:generateContent", up).name == "gemini"
    assert route_request("/api/chat", up).url == "http://localhost:11434/api/chat"
    assert route_request("/groq/v1/chat/completions", up).url == "https://api.groq.com/openai/v1/chat/completions"
    assert route_request("/vllm/v1/models", up).url == "http://gpu:8000/base/v1/models"
    assert route_request("/unknown/path", up).name == "openai"  # default upstream, never a caller-chosen host


def test_interception_only_for_known_hosts():
    assert route_for_host("api.openai.com", "/v1/models", DEFAULT_UPSTREAMS).name == "openai"
    assert route_for_host("example.com", "/", DEFAULT_UPSTREAMS) is None


def test_trace_headers():
    assert is_trace_header("X-Trace-User-Id") and is_trace_header("traceparent")
    assert is_trace_header("Helicone-Property-Team") and not is_trace_header("Authorization")
    ctx = trace_context([("X-Trace-Id", "550e8400-e29b-41d4-a716-446655440000"), ("X-Trace-Step", "plan"),
                         ("X-Trace-Feature", "chat"), ("Helicone-User-Id", "u1"), ("X-Trace-Team", "core"),
                         ("Helicone-Property-Env", "prod")])
    assert ctx.trace_id == "550e8400e29b41d4a716446655440000"
    assert ctx.attributes == {"step": "plan", "feature": "chat", "user_id": "u1",
                              "custom": {"team": "core", "env": "prod"}}
    assert len(ctx.span_id) == 16 and ctx.parent_span_id is None


def test_any_trace_key_groups_calls():
    a, original = normalise_trace_id("checkout-flow-42")
    assert len(a) == 32 and original == "checkout-flow-42"
    assert normalise_trace_id("checkout-flow-42")[0] == a


def test_traceparent_makes_the_span_a_child():
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    ctx = trace_context([("traceparent", tp)])
    assert (ctx.trace_id, ctx.parent_span_id) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    assert parse_traceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01") is None
    assert parse_traceparent("00-" + "0" * 32 + "-00f067aa0ba902b7-01") is None
    assert trace_context([("traceparent", "garbage")]).parent_span_id is None


def test_fit_caps_nested_structures():
    import json

    from llmflow_core.redact import fit

    value = {"messages": [{"role": "user", "content": "x" * 10_000}] * 50, "n": 1}
    capped, cut = fit(value, 4096)
    assert cut and len(json.dumps(capped)) < 4096 + 600
    small = {"a": ["b", 1, None]}
    assert fit(small, 4096) == (small, False)
    assert fit(value, 0) == (value, False)
