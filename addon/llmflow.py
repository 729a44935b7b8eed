"""The LLMFlow mitmproxy addon: route each call, tee its response, hand it to the writer.

Runs inside LLMFlow's own runner (``python -m addon``) or as a plain script:
``mitmdump --mode reverse:https://api.openai.com@8080 -s addon/llmflow.py``.

What runs on the proxy's event loop is kept to copying references and timestamps; building
and storing the span happens in the recorder, a child process (llmflow_core.recorder), so it
never competes with the proxy for its core. If anything in here fails, the call goes on
untouched: recording is never allowed to break the user's traffic.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import sys
import time
import weakref
from pathlib import Path

try:
    import llmflow_core  # noqa: F401
except ImportError:  # loaded by path (mitmdump -s addon/llmflow.py): make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mitmproxy import http
from mitmproxy.proxy.mode_specs import ReverseMode

from llmflow_core import config as llmflow_config
from llmflow_core.exchange import DEFAULT_HEAD_LIMIT, BodyTee, Exchange
from llmflow_core.recorder import RecorderProcess
from llmflow_core.routing import Route, route_for_host, route_request
from llmflow_core.status import status_file
from llmflow_core.tracing import is_trace_header

log = logging.getLogger("llmflow.addon")
META = "llmflow"
ACCESS_HEADER = "x-llmflow-key"
ACCESS_DENIED = json.dumps({"error": {
    "message": "LLMFlow: this proxy needs its access key in the X-LLMFlow-Key header",
    "type": "llmflow_access_denied"}}).encode()


def basic_auth_password(header: str) -> str | None:
    """The password of a ``Basic`` Proxy-Authorization header (the user name is ignored).
    Our own few lines: mitmproxy's helper lives in its proxyauth addon, which imports ldap3."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return None
    _user, colon, password = decoded.partition(":")
    return password if colon else None


def proxy_auth_required() -> http.Response:
    return http.Response.make(407, ACCESS_DENIED, {
        "content-type": "application/json",
        "proxy-authenticate": 'Basic realm="LLMFlow"'})


class _Pending:
    """Per-flow state between the request and the end of the response."""

    __slots__ = ("route", "path", "trace_headers", "tee", "started")

    def __init__(self, route: Route, path: str, trace_headers: list[tuple[str, str]],
                 started: float) -> None:
        self.route = route
        self.path = path
        self.trace_headers = trace_headers
        self.started = started
        self.tee: BodyTee | None = None


class LLMFlow:
    def __init__(self, config: llmflow_config.Config | None = None) -> None:
        self.config = config or llmflow_config.load()
        self.head_limit = max(DEFAULT_HEAD_LIMIT, 4 * self.config.max_response_size)
        self._inflight: dict[str, http.HTTPFlow] = {}  # routed, not finished yet
        # HTTPS_PROXY connections that showed the access key on CONNECT
        self._authorized: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.recorder = RecorderProcess(self.config, status_path=status_file(self.config.data_dir))

    # -- lifecycle -----------------------------------------------------------------------------
    def running(self) -> None:
        self.recorder.start()
        log.info("LLMFlow recording to %s", "MongoDB" if self.config.mongo_uri
                 else self.config.sqlite_path)

    def done(self) -> None:
        # Calls still in flight when the proxy stops are recorded with what they got so far.
        for flow in list(self._inflight.values()):
            pending = flow.metadata.pop(META, None)
            if pending is not None:
                exchange = self._exchange(flow, pending)
                exchange.error = exchange.error or "the LLMFlow proxy shut down during the call"
                exchange.cancelled = True
                self.recorder.submit(exchange)
        self._inflight.clear()
        self.recorder.stop()
        stats = self.recorder.stats
        log.info("LLMFlow stopped: %d call(s) handed to the recorder, %d dropped", stats.sent,
                 stats.dropped)

    # -- access control (PROXY_ACCESS_KEY) -------------------------------------------------------
    def _key_ok(self, supplied: str | None) -> bool:
        return hmac.compare_digest((supplied or "").encode(), self.config.proxy_access_key.encode())

    def http_connect(self, flow: http.HTTPFlow) -> None:
        """HTTPS_PROXY mode: the key comes as the proxy password on CONNECT; the connection is
        then trusted for the requests inside it."""
        if not self.config.proxy_access_key:
            return
        password = basic_auth_password(flow.request.headers.get("proxy-authorization", ""))
        if password is None:
            password = flow.request.headers.get(ACCESS_HEADER)
        if self._key_ok(password):
            self._authorized[flow.client_conn] = True
            flow.request.headers.pop("proxy-authorization", None)
        else:
            flow.response = proxy_auth_required()

    def _access_denied(self, flow: http.HTTPFlow) -> bool:
        key = self.config.proxy_access_key
        if not key:
            return False
        supplied = flow.request.headers.pop(ACCESS_HEADER, None)
        if self._key_ok(supplied) or self._authorized.get(flow.client_conn):
            return False
        log.warning("refused a call without a valid %s from %s", ACCESS_HEADER,
                    flow.client_conn.peername)
        flow.response = http.Response.make(401, ACCESS_DENIED, {"content-type": "application/json"})
        return True

    # -- hooks ---------------------------------------------------------------------------------
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        try:
            if self._access_denied(flow):
                return
            self._route(flow)
        except Exception:  # never break the call
            log.exception("routing failed; forwarding unchanged and unrecorded")

    def _route(self, flow: http.HTTPFlow) -> None:
        request = flow.request
        path = request.path
        if isinstance(flow.client_conn.proxy_mode, ReverseMode):
            route = route_request(path, self.config.upstreams)
        else:
            found = route_for_host(request.pretty_host, path, self.config.upstreams)
            if found is None:
                return  # not an LLM host: pass through, unrecorded
            route = found
        trace_headers = [(k, v) for k, v in request.headers.items(multi=True) if is_trace_header(k)]
        for name, _ in trace_headers:
            request.headers.pop(name, None)
        request.scheme, request.host, request.port = route.scheme, route.host, route.port
        request.path = route.path
        flow.metadata[META] = _Pending(route, path, trace_headers,
                                       request.timestamp_start or time.time())
        self._inflight[flow.id] = flow

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        pending = flow.metadata.get(META)
        if pending is not None and flow.response is not None:
            # Stream every response: the client gets each byte as it arrives, and the tee keeps
            # a bounded copy for the span (so large bodies are never held whole in memory).
            pending.tee = BodyTee(self.head_limit)
            flow.response.stream = pending.tee

    def response(self, flow: http.HTTPFlow) -> None:
        self._finish(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._finish(flow)

    def _finish(self, flow: http.HTTPFlow) -> None:
        self._inflight.pop(flow.id, None)
        pending: _Pending | None = flow.metadata.pop(META, None)
        if pending is None:
            return
        try:
            self.recorder.submit(self._exchange(flow, pending))
        except Exception:
            log.exception("could not record a call (the call itself was not affected)")

    def _exchange(self, flow: http.HTTPFlow, pending: _Pending) -> Exchange:
        request, response = flow.request, flow.response
        exchange = Exchange(
            route=pending.route.name,
            method=request.method,
            url=pending.route.url,
            path=pending.path,
            request_headers=list(request.headers.items(multi=True)),
            request_body=request.raw_content or b"",
            started=pending.started,
            trace_headers=pending.trace_headers,
        )
        if response is not None:
            exchange.status_code = response.status_code
            exchange.response_headers = list(response.headers.items(multi=True))
            exchange.response_started = response.timestamp_start
            exchange.ended = response.timestamp_end or time.time()
            if pending.tee is not None:
                pending.tee.fill(exchange)
            else:
                exchange.response_body = response.raw_content or b""
                exchange.response_size = len(exchange.response_body)
        else:
            exchange.ended = time.time()
        if flow.error is not None:
            exchange.error = flow.error.msg
            exchange.cancelled = "client disconnected" in flow.error.msg.lower()
            if response is None:
                exchange.client_status = 504 if "timeout" in flow.error.msg.lower() else 502
        return exchange


# mitmdump -s loads this file as a script module and takes ``addons`` from it; LLMFlow's own
# runner imports the class instead and adds it to a lean master.
addons = [LLMFlow()] if __name__.startswith("__mitmproxy_script__") else []
