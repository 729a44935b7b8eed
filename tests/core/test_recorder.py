"""The recorder process: the proxy's exchanges cross a pipe to a child that stores them.

These drive the real child (``python -m llmflow_core.recorder``) from the proxy's side,
``RecorderProcess``, without mitmproxy: what crosses, what survives the child dying, what the
status file says, and that Ctrl-C (SIGINT to the process group) does not cut the child short.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from llmflow_core import config as llmflow_config
from llmflow_core.exchange import Exchange
from llmflow_core.recorder import RecorderProcess
from llmflow_core.store.sqlite import SQLiteStore

CHAT = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}).encode()
ANSWER = json.dumps({"id": "c1", "object": "chat.completion", "model": "gpt-4o-mini",
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"},
                                  "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}).encode()


def exchange(number: int) -> Exchange:
    now = time.time()
    return Exchange(route="openai", method="POST", url="https://api.openai.com/v1/chat/completions",
                    path="/v1/chat/completions",
                    request_headers=[("content-type", "application/json"),
                                     ("authorization", "Bearer sk-canary-recorder-0123456789")],
                    request_body=CHAT, started=now,
                    trace_headers=[("x-trace-user-id", f"user-{number}")], status_code=200,
                    response_headers=[("content-type", "application/json")], response_body=ANSWER,
                    response_size=len(ANSWER), response_started=now + 0.01, ended=now + 0.02)


@pytest.fixture
def config(tmp_path: Path) -> llmflow_config.Config:
    return llmflow_config.load({"LLMFLOW_DATA_DIR": str(tmp_path / "data"), "LOG_LEVEL": "WARNING"})


def count(config: llmflow_config.Config) -> int:
    store = SQLiteStore(config.sqlite_path)
    try:
        return store.stats().spans
    finally:
        store.close()


def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_every_exchange_is_stored_and_redacted(config, tmp_path):
    status_path = tmp_path / "status.json"
    recorder = RecorderProcess(config, status_path=status_path).start()
    for number in range(300):
        assert recorder.submit(exchange(number))
    recorder.stop()
    assert recorder.stats.sent == 300 and recorder.stats.dropped == 0
    assert count(config) == 300
    raw = config.sqlite_path.read_bytes()
    assert b"sk-canary-recorder" not in raw
    status = json.loads(status_path.read_text())
    # the status file names the proxy process (this one), not the recorder child
    assert status["pid"] == os.getpid() and status["written"] == 300


def test_a_recorder_that_dies_is_replaced_and_later_calls_are_kept(config):
    recorder = RecorderProcess(config, restart_delay=0.1).start()
    for number in range(20):
        recorder.submit(exchange(number))
    wait_for(lambda: recorder.stats.sent == 20)
    wait_for(lambda: config.sqlite_path.exists() and count(config) == 20)
    first = recorder.child_pid
    os.kill(first, signal.SIGKILL)
    time.sleep(0.2)
    for number in range(20, 50):
        recorder.submit(exchange(number))
    recorder.stop()
    assert recorder.stats.restarts >= 1 and recorder.child_pid != first
    assert count(config) == 50
    assert recorder.stats.dropped == 0


def test_ctrl_c_does_not_cut_the_recorder_short(config):
    """SIGINT reaches the whole process group; the child keeps going until the proxy closes
    the pipe, so the calls the proxy records while stopping still get stored."""
    recorder = RecorderProcess(config).start()
    recorder.submit(exchange(0))
    wait_for(lambda: recorder.stats.sent == 1)
    time.sleep(0.5)  # the child has started and set its signal handling
    os.kill(recorder.child_pid, signal.SIGINT)
    os.kill(recorder.child_pid, signal.SIGTERM)
    time.sleep(0.3)
    recorder.submit(exchange(1))
    recorder.stop()
    assert count(config) == 2
    assert recorder.stats.restarts == 0


def test_a_full_queue_drops_loudly_and_the_count_reaches_the_status_file(config, tmp_path, caplog):
    status_path = tmp_path / "status.json"
    recorder = RecorderProcess(config, status_path=status_path, max_queue=5)
    # not started yet: nothing drains the queue
    results = [recorder.submit(exchange(number)) for number in range(8)]
    assert results == [True] * 5 + [False] * 3
    assert recorder.stats.dropped == 3
    assert any("LOST" in record.getMessage() for record in caplog.records)
    recorder.start()
    wait_for(lambda: recorder.stats.sent == 5)
    assert recorder.submit(exchange(9))  # the next frame tells the child about the drops
    recorder.stop()
    assert count(config) == 6
    assert json.loads(status_path.read_text())["dropped"] == 3


def test_stopping_a_recorder_that_never_started_says_what_it_lost(config, caplog):
    recorder = RecorderProcess(config)
    recorder.submit(exchange(0))
    recorder.stop()  # e.g. the proxy could not bind its port: no error, the loss is counted
    assert recorder.stats.dropped == 1
    assert any("before its recorder started" in r.getMessage() for r in caplog.records)
