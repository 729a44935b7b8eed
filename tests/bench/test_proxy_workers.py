"""PROXY_WORKERS: several proxy processes share the ports (SO_REUSEPORT) under one supervisor.

The real proxy (``python -m addon``) with two workers in front of the mock upstream: calls on
fresh connections are spread over both workers and every one is recorded once; a worker that
dies is replaced; SIGTERM drains both workers before the supervisor exits 0; a bad value stops
start-up with a message naming the variable.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import time

import pytest

from bench.procstat import children, tree
from bench.upstreams import _listens
from tests.support.mock_upstream import REPLY_TEXT, MockUpstream
from tests.support.processes import ROOT, RUNTIME_PYTHON, llmflow_env, query_store, start_proxy

pytestmark = pytest.mark.e2e

CALLS = 30


@pytest.fixture
def upstream():
    server = MockUpstream().start()
    yield server
    server.stop()


def call(port: int, tag: str) -> dict:
    """One chat call on its own connection (so the kernel picks a worker for each)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": tag}]})
        connection.request("POST", "/v1/chat/completions", body,
                           {"Content-Type": "application/json", "Authorization": "Bearer sk-test",
                            "X-Trace-Call": tag, "Connection": "close"})
        response = connection.getresponse()
        assert response.status == 200
        return json.loads(response.read())
    finally:
        connection.close()


def wait_for_workers(proxy, count: int, timeout: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = [pid for pid in tree(proxy.process.pid)[1:] if _listens(pid, proxy.port)]
        if len(workers) >= count:
            return workers
        time.sleep(0.1)
    raise AssertionError(f"{count} workers are not listening\n{proxy.log()}")


def stored_tags(data) -> list[str]:
    return [tag for (tag,) in query_store(data, "SELECT json_extract(doc, '$.attributes.custom.call') FROM spans")]


def wait_for_stored(data, count: int, timeout: float = 20.0) -> list[str]:
    deadline = time.monotonic() + timeout
    tags = stored_tags(data)
    while len(tags) < count and time.monotonic() < deadline:
        time.sleep(0.2)
        tags = stored_tags(data)
    return tags


def test_two_workers_share_the_port_record_every_call_and_drain_on_sigterm(tmp_path, upstream):
    data = tmp_path / "data"
    proxy = start_proxy(data, tmp_path, UPSTREAM_OPENAI=upstream.url, PROXY_WORKERS=2)
    try:
        started = time.monotonic()
        workers = wait_for_workers(proxy, 2)
        assert sorted(children(proxy.process.pid)) == sorted(workers)  # the supervisor's two
        # and each worker has its recorder process (started once the worker runs)
        deadline = time.monotonic() + 20
        while sorted(len(children(pid)) for pid in workers) != [1, 1]:
            assert time.monotonic() < deadline, [children(pid) for pid in workers]
            time.sleep(0.1)
        assert all(_listens(pid, proxy.intercept_port) for pid in workers)  # both ports shared

        for index in range(CALLS):
            assert call(proxy.port, f"call-{index}")["choices"][0]["message"]["content"] == REPLY_TEXT
        assert len(wait_for_stored(data, CALLS)) == CALLS

        # a worker that dies (after start-up) is replaced, and the port keeps answering
        time.sleep(max(0.0, 10.5 - (time.monotonic() - started)))
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            now = [pid for pid in tree(proxy.process.pid)[1:] if _listens(pid, proxy.port)]
            if len(now) == 2 and workers[0] not in now:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"the dead worker was not replaced\n{proxy.log()}")
        for index in range(CALLS, CALLS + 6):
            call(proxy.port, f"call-{index}")
    finally:
        code = proxy.stop()  # SIGTERM to the supervisor: the workers drain, then it exits
    log = proxy.log()
    assert code == 0, log
    assert "exited with -9: starting a new one" in log
    assert not [pid for pid in workers if os.path.exists(f"/proc/{pid}/status")
                and "State:\tZ" not in open(f"/proc/{pid}/status").read()]

    tags = stored_tags(data)
    assert sorted(tags) == sorted(f"call-{index}" for index in range(CALLS + 6))  # each once
    statuses = [json.loads(path.read_text()) for path in (data / "status").glob("proxy-*.json")]
    assert len({status["pid"] for status in statuses}) == 3  # each worker, the replacement too
    assert sum(1 for status in statuses if status["written"] > 0) >= 2, statuses  # both served
    assert all(status["dropped"] == 0 for status in statuses)


def test_a_bad_worker_count_stops_start_up(tmp_path):
    done = subprocess.run([str(RUNTIME_PYTHON), "-m", "addon"], cwd=ROOT, capture_output=True, text=True,
                          env=llmflow_env(tmp_path / "data", PROXY_WORKERS="many"), timeout=60)
    assert done.returncode == 2
    assert "PROXY_WORKERS='many' is not valid" in done.stderr
