"""Optional copy of every proxied span to another OTLP collector (Jaeger, Tempo, any backend).

With OTEL_EXPORTER_OTLP_ENDPOINT set, the proxy also posts its spans there as OTLP/JSON
(``{endpoint}/v1/traces``), from a thread of its own with a bounded queue: a slow or dead
collector never slows a call and never touches LLMFlow's own copy. Batches the collector cannot
take are counted and dropped (the collector is a copy; the store is the record).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import urllib.error
import urllib.request
from typing import Sequence

from llmflow_core.otlp import encode_json
from llmflow_core.spans import Span

log = logging.getLogger("llmflow.forward")


class Forwarder:
    def __init__(self, endpoint: str, headers: dict[str, str] | None = None, *,
                 max_batches: int = 100, timeout: float = 5.0) -> None:
        self.url = endpoint.rstrip("/") + ("" if endpoint.rstrip("/").endswith("/v1/traces") else "/v1/traces")
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.timeout = timeout
        self.sent = 0
        self.failed = 0
        self._queue: queue.Queue[list[Span] | None] = queue.Queue(maxsize=max_batches)
        self._thread = threading.Thread(target=self._run, name="llmflow-forward", daemon=True)
        self._thread.start()

    def submit(self, spans: Sequence[Span]) -> None:
        try:
            self._queue.put_nowait(list(spans))
        except queue.Full:
            self._failed(len(spans), "forwarding queue full")

    def close(self, timeout: float = 5.0) -> None:
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)

    def _failed(self, count: int, why: str) -> None:
        if self.failed == 0 or self.failed // 1000 != (self.failed + count) // 1000:
            log.warning("could not forward %d span(s) to %s: %s", count, self.url, why)
        self.failed += count

    def _run(self) -> None:
        while (spans := self._queue.get()) is not None:
            body = json.dumps(encode_json(spans), default=str).encode()
            request = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    response.read()
                self.sent += len(spans)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                self._failed(len(spans), str(exc))


def parse_headers(text: str) -> dict[str, str]:
    """OTEL_EXPORTER_OTLP_HEADERS: ``key=value,key2=value2``."""
    pairs = (item.split("=", 1) for item in text.split(",") if "=" in item)
    return {key.strip(): value.strip() for key, value in pairs}
