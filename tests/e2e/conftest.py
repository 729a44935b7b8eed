"""The real stack for end-to-end tests: mock upstream -> proxy process -> store <- dashboard process."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests

from tests.support.mock_upstream import MockUpstream
from tests.support.processes import Service, start_dashboard, start_proxy

AUTH = ("llmflow", "password")


@dataclass
class Stack:
    upstream: MockUpstream
    proxy: Service
    dashboard: Service
    data_dir: Path

    def api(self, path: str, **params: Any) -> Any:
        response = requests.get(self.dashboard.url + path, params=params, auth=AUTH, timeout=10)
        response.raise_for_status()
        return response.json()

    def wait_for_spans(self, count: int, timeout: float = 10.0, **params: Any) -> list[dict]:
        """The newest ``count`` spans, once that many matching spans are stored."""
        deadline = time.monotonic() + timeout
        spans: list[dict] = []
        while time.monotonic() < deadline:
            spans = self.api("/api/spans", limit=max(count, 1), **params)["spans"]
            if len(spans) >= count:
                return spans
            time.sleep(0.1)
        raise AssertionError(f"expected {count} span(s), found {len(spans)}\n{self.proxy.log()}")

    def span_where(self, predicate: Callable[[dict], bool], timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for span in self.api("/api/spans", limit=200)["spans"]:
                if predicate(span):
                    return span
            time.sleep(0.1)
        raise AssertionError(f"no matching span was stored\n{self.proxy.log()}")


def start_stack(tmp: Path, upstream: MockUpstream, **env: Any) -> Stack:
    data = tmp / "data"
    proxy = start_proxy(data, tmp, UPSTREAM_OPENAI=upstream.url, **env)
    try:
        dashboard = start_dashboard(data, tmp, **env)
    except Exception:
        proxy.stop()
        raise
    return Stack(upstream, proxy, dashboard, data)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    upstream = MockUpstream().start()
    running = start_stack(tmp_path_factory.mktemp("stack"), upstream, UPSTREAM_ANTHROPIC=upstream.url,
                          UPSTREAM_GEMINI=upstream.url, UPSTREAM_OLLAMA=upstream.url)
    yield running
    running.proxy.stop()
    running.dashboard.stop()
    upstream.stop()
