"""HTTPS_PROXY mode: an app that keeps the provider's real URL and sets HTTPS_PROXY.

Only LLM API hosts are intercepted (UPSTREAM_<NAME> still applies, so api.openai.com goes to
the local mock here); any other host is tunnelled untouched.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import stat
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import pytest

from tests.support.mock_upstream import REPLY_TEXT

pytestmark = pytest.mark.e2e

CLIENT = textwrap.dedent("""
    import json, sys
    from openai import OpenAI
    client = OpenAI(api_key="sk-intercepted-canary", max_retries=0)  # the real default URL
    marker = sys.argv[1]
    plain = client.chat.completions.create(model="gpt-4o-mini", extra_headers={"X-Trace-Marker": marker},
                                           messages=[{"role": "user", "content": "through HTTPS_PROXY"}])
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="gpt-4o-mini", stream=True, stream_options={"include_usage": True},
        extra_headers={"X-Trace-Marker": marker + "-stream"},
        messages=[{"role": "user", "content": "streamed"}]) if c.choices)
    print(json.dumps({"plain": plain.choices[0].message.content, "streamed": streamed}))
""")


def confdir(stack) -> Path:
    return stack.data_dir / "mitmproxy"


def app_env(stack) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update({"HTTPS_PROXY": f"http://127.0.0.1:{stack.proxy.intercept_port}",
                "SSL_CERT_FILE": str(confdir(stack) / "ca-bundle.pem")})
    return env


def test_openai_sdk_through_https_proxy(stack):
    marker = uuid.uuid4().hex
    result = subprocess.run([sys.executable, "-c", CLIENT, marker], env=app_env(stack),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"plain": REPLY_TEXT, "streamed": REPLY_TEXT}
    for suffix, streamed in (("", False), ("-stream", True)):
        span = stack.span_where(lambda s: (s["attributes"].get("custom") or {}).get("marker") == marker + suffix)
        attrs = span["attributes"]
        assert span["status"] == "success"
        assert attrs["provider"] == "openai" and attrs["stream"] is streamed
        assert attrs["model"] == "gpt-4o-mini-2024-07-18" and attrs["completion_tokens"] == 10
        assert span["request"]["url"] == f"{stack.upstream.url}/v1/chat/completions"
        assert "sk-intercepted-canary" not in json.dumps(span)
    # the upstream saw the real request, Host rewritten to it
    assert stack.upstream.last("/chat/completions").headers["authorization"] == "Bearer sk-intercepted-canary"


def test_curl_through_https_proxy(stack):
    marker = uuid.uuid4().hex
    out = subprocess.run(
        ["curl", "-sS", "--fail-with-body", "--proxy", f"http://127.0.0.1:{stack.proxy.intercept_port}",
         "--cacert", str(confdir(stack) / "mitmproxy-ca-cert.pem"),
         "https://api.openai.com/v1/chat/completions", "-H", "Authorization: Bearer sk-curl",
         "-H", "Content-Type: application/json", "-H", f"X-Trace-Marker: {marker}",
         "-d", json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "curl"}]})],
        capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["choices"][0]["message"]["content"] == REPLY_TEXT
    span = stack.span_where(lambda s: (s["attributes"].get("custom") or {}).get("marker") == marker)
    assert span["attributes"]["prompt_tokens"] == 4


def test_other_hosts_are_tunnelled_untouched(stack, tmp_path):
    """A TLS server that is not an LLM API keeps its own certificate: LLMFlow never opens it."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=not-an-llm.local", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve():
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(tls.recv(100).upper())

    threading.Thread(target=serve, daemon=True).start()
    with socket.create_connection(("127.0.0.1", stack.proxy.intercept_port), timeout=10) as raw:
        raw.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        assert raw.recv(200).startswith(b"HTTP/1.1 200")
        client_ctx = ssl.create_default_context(cafile=str(cert))
        client_ctx.check_hostname = False
        with client_ctx.wrap_socket(raw, server_hostname="not-an-llm.local") as tls:
            # verified against the server's own certificate: not re-signed by LLMFlow's CA
            assert tls.getpeercert()["subject"] == ((("commonName", "not-an-llm.local"),),)
            tls.sendall(b"ping")
            assert tls.recv(100) == b"PING"
    listener.close()


def test_ca_is_persistent_and_its_key_private(stack):
    directory = confdir(stack)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for name in ("mitmproxy-ca.pem", "mitmproxy-ca.p12"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600
    bundle = (directory / "ca-bundle.pem").read_text()
    assert (directory / "mitmproxy-ca-cert.pem").read_text().strip() in bundle
    assert bundle.count("BEGIN CERTIFICATE") > 50  # the public roots too


def test_the_same_ca_survives_a_restart(stack, tmp_path):
    from tests.support.processes import start_proxy

    before = (confdir(stack) / "mitmproxy-ca-cert.pem").read_bytes()
    again = start_proxy(stack.data_dir, tmp_path, UPSTREAM_OPENAI=stack.upstream.url)
    try:
        assert (confdir(stack) / "mitmproxy-ca-cert.pem").read_bytes() == before
    finally:
        again.stop()


OTHER_SDKS = textwrap.dedent("""
    import json, sys
    import anthropic
    from google import genai
    from google.genai import types
    marker = sys.argv[1]
    claude = anthropic.Anthropic(api_key="sk-ant-intercepted-canary", max_retries=0)  # real default URL
    plain = claude.messages.create(model="claude-3-5-haiku-latest", max_tokens=64,
                                   messages=[{"role": "user", "content": "hi"}],
                                   extra_headers={"X-Trace-Marker": marker + "-anthropic"})
    with claude.messages.stream(model="claude-3-5-haiku-latest", max_tokens=64,
                                messages=[{"role": "user", "content": "hi"}],
                                extra_headers={"X-Trace-Marker": marker + "-anthropic-stream"}) as stream:
        streamed = "".join(stream.text_stream)
    gemini = genai.Client(api_key="AIza-intercepted-canary-0123456789")
    def options(tag):
        return types.GenerateContentConfig(http_options=types.HttpOptions(headers={"X-Trace-Marker": marker + tag}))
    g_plain = gemini.models.generate_content(model="gemini-2.0-flash", contents="hi", config=options("-gemini"))
    g_streamed = "".join(chunk.text or "" for chunk in gemini.models.generate_content_stream(
        model="gemini-2.0-flash", contents="hi", config=options("-gemini-stream")))
    print(json.dumps({"anthropic": [plain.content[0].text, streamed], "gemini": [g_plain.text, g_streamed]}))
""")


def test_anthropic_and_gemini_sdks_through_https_proxy(stack):
    marker = uuid.uuid4().hex
    result = subprocess.run([sys.executable, "-c", OTHER_SDKS, marker], env=app_env(stack),
                            capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"anthropic": [REPLY_TEXT, REPLY_TEXT], "gemini": [REPLY_TEXT, REPLY_TEXT]}
    for tag, provider, streamed in (("-anthropic", "anthropic", False), ("-anthropic-stream", "anthropic", True),
                                    ("-gemini", "gemini", False), ("-gemini-stream", "gemini", True)):
        span = stack.span_where(lambda s: (s["attributes"].get("custom") or {}).get("marker") == marker + tag)
        attrs = span["attributes"]
        assert span["status"] == "success", tag
        assert attrs["provider"] == provider and attrs["stream"] is streamed, tag
        assert span["response"]["output"]["text"] == REPLY_TEXT, tag
        assert attrs["completion_tokens"] == 10 and attrs["usage_estimated"] is False, tag
        assert span["request"]["url"].startswith(stack.upstream.url), tag
        text = json.dumps(span)
        assert "intercepted-canary" not in text, tag
        if streamed:
            assert 0 < attrs["ttft_ms"] < span["duration"], tag


def test_curl_streamed_through_https_proxy(stack):
    marker = uuid.uuid4().hex
    out = subprocess.run(
        ["curl", "-sSN", "--proxy", f"http://127.0.0.1:{stack.proxy.intercept_port}",
         "--cacert", str(confdir(stack) / "mitmproxy-ca-cert.pem"),
         "https://api.openai.com/v1/chat/completions", "-H", "Authorization: Bearer sk-curl",
         "-H", "Content-Type: application/json", "-H", f"X-Trace-Marker: {marker}",
         "-d", json.dumps({"model": "gpt-4o-mini", "stream": True,
                           "messages": [{"role": "user", "content": "curl stream"}]})],
        capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.rstrip().endswith("data: [DONE]")
    received = stack.upstream.last("/chat/completions")
    assert out.stdout == received.sent.decode()  # byte for byte what the upstream sent
    span = stack.span_where(lambda s: (s["attributes"].get("custom") or {}).get("marker") == marker)
    assert span["attributes"]["stream"] is True and span["response"]["output"]["text"] == REPLY_TEXT
