"""The LLMFlow mitmproxy addon: route each call, tee its response, hand it to the writer.

Runs inside LLMFlow's own runner (``python -m addon``) or as a plain script:
``mitmdump --mode reverse:https://api.openai.com@8080 -s addon/llmflow.py``.

What runs on the proxy's event loop is kept to copying references and timestamps; building
and storing the span happens on the writer thread (llmflow_core.writer). If anything in here
fails, the call goes on untouched: recording is never allowed to break the user's traffic.
"""

from __future__ import annotations

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
from mitmproxy.addons.proxyauth import make_auth_required_response, parse_http_basic_auth
from mitmproxy.proxy.mode_specs import ReverseMode

from llmflow_core import config as llmflow_config
from llmflow_core.capture import CaptureOptions, build_span
from llmflow_core.exchange import DEFAULT_HEAD_LIMIT, BodyTee, Exchange
from llmflow_core.routing import Route, route_for_host, route_request
from llmflow_core.forward import Forwarder, parse_headers
from llmflow_core.otlp import mark_duplicates
from llmflow_core.spans import Span
from llmflow_core.spool import Spool
from llmflow_core.status import status_file
from llmflow_core.store import SpanStore, apply_retention, open_store
from llmflow_core.tracing import is_trace_header
from llmflow_core.writer import SpanWriter

log = logging.getLogger("llmflow.addon")
META = "llmflow"
ACCESS_HEADER = "x-llmflow-key"
ACCESS_DENIED = json.dumps({"error": {
    "message": "LLMFlow: this proxy needs its access key in the X-LLMFlow-Key header",
    "type": "llmflow_access_denied"}}).encode()


def mark_proxied_duplicates(store: SpanStore, spans: list[Span]) -> list[Span]:
    """A proxied call whose parent is the app's own SDK span of the same call (traceparent)
    is a second record of that call: mark it, so totals count the call once."""
    parents = {span.parent_span_id for span in spans if span.parent_span_id and span.kind == "llm"}
    if not parents:
        return spans
    stored = [found for found in (store.get_span(parent) for parent in parents) if found]
    return mark_duplicates(spans, stored) if stored else spans


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
        self.options = CaptureOptions(max_body_size=self.config.max_response_size,
                                      service_name=self.config.service_name,
                                      free_providers=self.config.free_providers)
        self.head_limit = max(DEFAULT_HEAD_LIMIT, 4 * self.config.max_response_size)
        self._inflight: dict[str, http.HTTPFlow] = {}  # routed, not finished yet
        # HTTPS_PROXY connections that showed the access key on CONNECT
        self._authorized: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        data_dir = self.config.data_dir
        self.forwarder = (Forwarder(self.config.otlp_forward_endpoint,
                                    parse_headers(self.config.otlp_forward_headers))
                          if self.config.otlp_forward_endpoint else None)
        self.writer = SpanWriter(lambda: open_store(self.config, writer=True),
                                 lambda exchange: build_span(exchange, self.options),
                                 spool=Spool(data_dir / "spool", self.config.spool_max_size),
                                 maintenance=self._prune, prepare=mark_proxied_duplicates,
                                 status_path=status_file(data_dir),
                                 on_written=self.forwarder.submit if self.forwarder else None)

    def _prune(self, store: SpanStore) -> None:
        """RETENTION_DAYS / RETENTION_PAYLOAD_DAYS, hourly (MongoDB also has a TTL index)."""
        deleted, dropped = apply_retention(store, self.config)
        if deleted or dropped:
            log.info("retention: %d span(s) deleted, %d payload(s) dropped", deleted, dropped)

    # -- lifecycle -----------------------------------------------------------------------------
    def running(self) -> None:
        self.writer.start()
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
                self.writer.submit(exchange)
        self._inflight.clear()
        self.writer.stop()
        if self.forwarder is not None:
            self.forwarder.close()
        stats = self.writer.stats
        log.info("LLMFlow stopped: %d span(s) written, %d dropped", stats.written, stats.dropped)

    # -- access control (PROXY_ACCESS_KEY) -------------------------------------------------------
    def _key_ok(self, supplied: str | None) -> bool:
        return hmac.compare_digest((supplied or "").encode(), self.config.proxy_access_key.encode())

    def http_connect(self, flow: http.HTTPFlow) -> None:
        """HTTPS_PROXY mode: the key comes as the proxy password on CONNECT; the connection is
        then trusted for the requests inside it."""
        if not self.config.proxy_access_key:
            return
        header = flow.request.headers.get("proxy-authorization", "")
        try:
            _scheme, _user, password = parse_http_basic_auth(header)
        except ValueError:
            password = flow.request.headers.get(ACCESS_HEADER)
        if self._key_ok(password):
            self._authorized[flow.client_conn] = True
            flow.request.headers.pop("proxy-authorization", None)
        else:
            flow.response = make_auth_required_response(is_proxy=True)

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
            self.writer.submit(self._exchange(flow, pending))
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
