"""Bodies as they really come: compressed, huge, binary; paths the proxy does not know."""

from __future__ import annotations

import gzip
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest
import requests

from tests.e2e.conftest import start_stack

pytestmark = pytest.mark.e2e
BIG_TEXT = "lorem ipsum " * 200_000  # ~2.4 MB of answer


class Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        for key, value in {"content-length": str(len(body)), **headers}.items():
            self.send_header(key.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        raw = self.rfile.read(int(self.headers["content-length"]))
        try:
            request = json.loads(raw)
        except ValueError:
            self.send(400, json.dumps({"error": {"message": "We could not parse the JSON body",
                                                 "type": "invalid_request_error"}}).encode(),
                      content_type="application/json")
            return
        model = request.get("model", "")
        if model == "hangup":  # the upstream resets: no response at all
            self.close_connection = True
            self.connection.close()
            return
        reply = {"id": "x", "object": "chat.completion", "model": model,
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": "zipped answer"},
                              "finish_reason": "stop"}],
                 "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}}
        if model == "gzip":
            self.send(200, gzip.compress(json.dumps(reply).encode()), content_type="application/json",
                      content_encoding="gzip")
        elif model == "huge":
            reply["choices"][0]["message"]["content"] = BIG_TEXT
            self.send(200, json.dumps(reply).encode(), content_type="application/json")
        elif model == "binary":
            self.send(200, bytes(range(256)) * 64, content_type="audio/mpeg")
        else:
            self.send(200, json.dumps(reply).encode(), content_type="application/json")

    def do_GET(self):
        self.send(200, json.dumps({"object": "list", "data": [{"id": "m1", "object": "model"}]}).encode(),
                  content_type="application/json")


@pytest.fixture(scope="module")
def small_stack(tmp_path_factory):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    class Url:
        url = f"http://127.0.0.1:{server.server_address[1]}"

    running = start_stack(tmp_path_factory.mktemp("bodies"), Url, MAX_RESPONSE_SIZE="64KB")
    yield running
    running.proxy.stop()
    running.dashboard.stop()
    server.shutdown()


def tagged(stack, marker):
    return stack.span_where(lambda s: (s["attributes"].get("custom") or {}).get("m") == marker)


def sdk(stack, marker):
    return openai.OpenAI(base_url=stack.proxy.url + "/v1", api_key="sk-test", max_retries=0,
                         default_headers={"X-Trace-M": marker})


def test_gzip_responses_reach_the_client_as_sent_and_are_recorded_decoded(small_stack):
    marker = uuid.uuid4().hex
    raw = requests.post(small_stack.proxy.url + "/v1/chat/completions", json={"model": "gzip", "messages": []},
                        headers={"X-Trace-M": marker, "Accept-Encoding": "gzip"}, stream=True, timeout=10)
    assert raw.headers["content-encoding"] == "gzip"
    body = raw.raw.read()  # the bytes as they came over the wire: still gzip
    assert json.loads(gzip.decompress(body))["choices"][0]["message"]["content"] == "zipped answer"
    span = tagged(small_stack, marker)
    assert span["response"]["output"]["text"] == "zipped answer"
    assert span["attributes"]["total_tokens"] == 9


def test_huge_bodies_pass_whole_and_are_stored_capped(small_stack):
    marker = uuid.uuid4().hex
    reply = sdk(small_stack, marker).chat.completions.create(model="huge", messages=[{"role": "user", "content": "x"}])
    assert reply.choices[0].message.content == BIG_TEXT  # the call is never cut
    span = tagged(small_stack, marker)
    assert span["attributes"]["truncated"] is True
    assert len(span["response"]["body"]) <= 64 * 1024
    assert span["response"]["size"] > 2_000_000
    assert span["attributes"]["total_tokens"] == 9  # still parsed from the whole answer
    assert len(json.dumps(span)) < 3 * 64 * 1024 + 20_000


def test_binary_bodies_are_forwarded_and_not_stored(small_stack):
    marker = uuid.uuid4().hex
    raw = requests.post(small_stack.proxy.url + "/v1/chat/completions", json={"model": "binary"},
                        headers={"X-Trace-M": marker}, timeout=10)
    assert raw.content == bytes(range(256)) * 64
    span = tagged(small_stack, marker)
    assert span["response"]["body"] == "[16384 bytes of binary data not stored]"


def test_unknown_paths_are_forwarded_and_recorded_as_http_spans(small_stack):
    marker = uuid.uuid4().hex
    models = sdk(small_stack, marker).models.list()
    assert [m.id for m in models.data] == ["m1"]
    span = tagged(small_stack, marker)
    assert span["kind"] == "http" and span["operation"] == "GET /v1/models"
    assert span["status"] == "success" and span["attributes"]["provider"] == "openai"


def test_malformed_request_bodies_are_forwarded_and_recorded(small_stack):
    marker = uuid.uuid4().hex
    response = requests.post(small_stack.proxy.url + "/v1/chat/completions", data=b"\xff\xfe{not json",
                             headers={"X-Trace-M": marker, "Content-Type": "application/json"}, timeout=10)
    assert response.status_code == 400  # exactly what the upstream answered
    assert response.json()["error"]["message"] == "We could not parse the JSON body"
    span = tagged(small_stack, marker)
    assert span["status"] == "error" and span["attributes"]["http_status"] == 400
    assert span["request"]["body"].endswith("{not json")
    assert span["error"]["message"] == "We could not parse the JSON body"


def test_an_upstream_that_hangs_up_gives_a_clear_502(small_stack):
    marker = uuid.uuid4().hex
    response = requests.post(small_stack.proxy.url + "/v1/chat/completions", json={"model": "hangup"},
                             headers={"X-Trace-M": marker}, timeout=10)
    assert response.status_code == 502
    span = tagged(small_stack, marker)
    assert span["status"] == "error" and span["attributes"]["http_status"] == 502
    assert span["error"]["type"] == "upstream_disconnected"
    assert span["error"]["message"] == "server closed connection"


def test_an_upstream_that_never_accepts_gives_a_502_after_the_connect_timeout(tmp_path, small_stack):
    import socket
    import time

    from tests.support.processes import start_proxy

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # never accepted: after one waiting connection, the kernel drops SYNs
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port))
    proxy = start_proxy(small_stack.data_dir, tmp_path, UPSTREAM_OPENAI=f"http://127.0.0.1:{port}",
                        CONNECT_TIMEOUT=2)
    marker = uuid.uuid4().hex
    try:
        started = time.monotonic()
        response = requests.post(proxy.url + "/v1/chat/completions", json={"model": "gpt-4o-mini"},
                                 headers={"X-Trace-M": marker}, timeout=30)
        waited = time.monotonic() - started
    finally:
        proxy.stop()
        filler.close()
        listener.close()
    assert response.status_code == 502 and 1.5 < waited < 10
    span = tagged(small_stack, marker)
    assert span["status"] == "error" and span["error"]["type"] == "upstream_timeout"
    assert "timed out after 2 s" in span["error"]["message"]
