"""Faults injected into the real processes: the app's calls always go through, and every span
ends up stored exactly once. Storage outages (a real MongoDB-wire server stopped and started
again, a locked SQLite file), proxy restarts with spans on disk, SIGTERM mid-stream."""

from __future__ import annotations

import sqlite3
import statistics
import threading
import time
import uuid

import openai
import pytest
from pymongo import MongoClient

from tests.conftest import mongo_uri
from tests.support.mock_upstream import REPLY_TEXT
from tests.support.processes import query_store, start_mongo_wire, start_proxy

pytestmark = pytest.mark.e2e


def sdk(proxy, **headers) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.url + "/v1", api_key="sk-fault-test", max_retries=0, timeout=20,
                         default_headers=headers or None)


def call(client, marker: str) -> float:
    started = time.perf_counter()
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                           extra_headers={"X-Trace-Run": marker})
    assert reply.choices[0].message.content == REPLY_TEXT
    return time.perf_counter() - started


def mongo_count(uri: str, database: str, marker: str) -> tuple[int, int]:
    spans = MongoClient(uri, serverSelectionTimeoutMS=5000)[database]["spans"]
    docs = list(spans.find({"attributes.custom.run": marker}, {"_id": 1}))
    return len(docs), len({d["_id"] for d in docs})


def wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    assert predicate()


def test_mongodb_outage_loses_no_span_and_slows_no_call(tmp_path, upstream):
    """The fault-injection run: stop the real MongoDB-wire server in the middle of a series of
    real SDK calls, start it again, and count: expected == made, no duplicates."""
    storage = tmp_path / "mongo-data"
    mongo = start_mongo_wire(storage, tmp_path)
    port = mongo.port
    database = f"fault{uuid.uuid4().hex[:6]}"
    uri = mongo_uri(mongo, database)
    proxy = start_proxy(tmp_path / "data", tmp_path, UPSTREAM_OPENAI=upstream.url, MONGO_URI=uri)
    client = sdk(proxy)
    marker = uuid.uuid4().hex
    try:
        before = [call(client, marker) for _ in range(15)]
        wait_until(lambda: mongo_count(uri, database, marker)[0] == 15)
        mongo.stop()  # storage goes away for ~8 s, longer than the driver's 5 s patience
        during = []
        for _ in range(20):
            during.append(call(client, marker))
            time.sleep(0.4)
        mongo = start_mongo_wire(storage, tmp_path, port=port)  # and comes back, same data
        after = [call(client, marker) for _ in range(15)]
        wait_until(lambda: mongo_count(uri, database, marker)[0] >= 50, timeout=60)
        made = len(before) + len(during) + len(after)
        stored, distinct = mongo_count(uri, database, marker)
        print(f"calls made {made}, spans stored {stored} ({distinct} distinct); median call "
              f"{statistics.median(before) * 1000:.1f} ms before, {statistics.median(during) * 1000:.1f} ms "
              f"during the outage, {statistics.median(after) * 1000:.1f} ms after")
        assert stored == distinct == made
        # calls kept their normal speed while the store was down (generous: a shared CI box)
        assert statistics.median(during) < statistics.median(before) * 3 + 0.05
        assert max(during) < 2.0
        assert "spooling spans to disk" in proxy.log() and "store is back" in proxy.log()
    finally:
        proxy.stop()
        mongo.stop()


def test_spans_on_disk_survive_a_proxy_restart(tmp_path, upstream):
    storage = tmp_path / "mongo-data"
    mongo = start_mongo_wire(storage, tmp_path)
    port = mongo.port
    database = f"restart{uuid.uuid4().hex[:6]}"
    uri = mongo_uri(mongo, database)
    mongo.stop()  # down from the start
    proxy = start_proxy(tmp_path / "data", tmp_path, UPSTREAM_OPENAI=upstream.url, MONGO_URI=uri)
    marker = uuid.uuid4().hex
    try:
        durations = [call(sdk(proxy), marker) for _ in range(12)]
        assert max(durations) < 2.0
    finally:
        assert proxy.stop() == 0  # SIGTERM with everything in flight: onto the spool
    spooled = list((tmp_path / "data" / "spool").iterdir())
    assert spooled and sum(p.stat().st_size for p in spooled) > 0
    mongo = start_mongo_wire(storage, tmp_path, port=port)
    proxy = start_proxy(tmp_path / "data", tmp_path, UPSTREAM_OPENAI=upstream.url, MONGO_URI=uri)
    try:
        wait_until(lambda: mongo_count(uri, database, marker)[0] == 12, timeout=60)
        wait_until(lambda: not list((tmp_path / "data" / "spool").iterdir()))
        assert mongo_count(uri, database, marker) == (12, 12)
    finally:
        proxy.stop()
        mongo.stop()


def sqlite_count(data_dir, marker: str) -> int:
    rows = query_store(data_dir, "SELECT COUNT(*) FROM spans WHERE json_extract(doc, '$.attributes.custom.run') = ?",
                       (marker,))
    return rows[0][0] if rows else 0


def recorder_pid(proxy) -> int:
    """The proxy's recorder process (its child running llmflow_core.recorder)."""
    import os

    children = []
    for task in os.listdir(f"/proc/{proxy.process.pid}/task"):  # a restart comes from a thread
        with open(f"/proc/{proxy.process.pid}/task/{task}/children") as handle:
            children += [int(pid) for pid in handle.read().split()]
    for pid in children:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            if b"llmflow_core.recorder" in handle.read():
                return pid
    raise AssertionError(f"no recorder process among {children}")


def test_a_killed_recorder_is_replaced_and_calls_never_notice(tmp_path, upstream):
    """The recorder (the proxy's child that builds and stores spans) dies outright: the calls go
    on at normal speed, the proxy starts a new recorder, and the calls made meanwhile are kept."""
    import os
    import signal

    data = tmp_path / "data"
    proxy = start_proxy(data, tmp_path, UPSTREAM_OPENAI=upstream.url)
    marker = uuid.uuid4().hex
    client = sdk(proxy)
    try:
        before = [call(client, marker) for _ in range(10)]
        wait_until(lambda: sqlite_count(data, marker) == 10)
        first = recorder_pid(proxy)
        os.kill(first, signal.SIGKILL)
        during = [call(client, marker) for _ in range(20)]
        wait_until(lambda: sqlite_count(data, marker) == 30, timeout=60)
        assert recorder_pid(proxy) != first
        print(f"median call {statistics.median(before) * 1000:.0f} ms before, "
              f"{statistics.median(during) * 1000:.0f} ms after the recorder was killed")
        assert max(during) < 2.0
    finally:
        assert proxy.stop() == 0
    assert sqlite_count(data, marker) == 30
    assert "starting a new one" in proxy.log()


def test_a_locked_sqlite_store_neither_slows_calls_nor_loses_spans(tmp_path, upstream):
    data = tmp_path / "data"
    proxy = start_proxy(data, tmp_path, UPSTREAM_OPENAI=upstream.url)
    client = sdk(proxy)
    marker = uuid.uuid4().hex
    try:
        warm = [call(client, marker) for _ in range(5)]
        db = data / "llmflow.sqlite3"

        def stored():
            rows = query_store(data, "SELECT COUNT(*), COUNT(DISTINCT span_id) FROM spans WHERE "
                               "json_extract(doc, '$.attributes.custom.run') = ?", (marker,))
            return rows[0] if rows else (0, 0)

        wait_until(lambda: stored()[0] == 5)
        locker = sqlite3.connect(db, timeout=1, isolation_level=None, check_same_thread=False)
        locker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock: 7 seconds
        released = threading.Timer(7.0, lambda: locker.execute("COMMIT"))
        released.start()
        during = [call(client, marker) for _ in range(25)]
        released.join()
        locker.close()

        wait_until(lambda: stored()[0] == 30, timeout=60)
        assert stored() == (30, 30)
        assert statistics.median(during) < statistics.median(warm) * 3 + 0.05
    finally:
        proxy.stop()


def test_sigterm_mid_stream_still_records_the_call(tmp_path, upstream):
    data = tmp_path / "data"
    proxy = start_proxy(data, tmp_path, UPSTREAM_OPENAI=upstream.url)
    marker = uuid.uuid4().hex
    got = []

    def stream():
        try:
            for chunk in sdk(proxy).chat.completions.create(
                    model="gpt-4o-mini-slow", stream=True, messages=[{"role": "user", "content": "go"}],
                    extra_headers={"X-Trace-Run": marker}):
                got.append(chunk)
        except Exception as exc:  # the proxy went away mid-stream: the client sees an error
            got.append(exc)

    reader = threading.Thread(target=stream)
    reader.start()
    deadline = time.monotonic() + 10
    while len(got) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proxy.stop() == 0
    reader.join(10)
    with sqlite3.connect(data / "llmflow.sqlite3") as conn:
        rows = conn.execute("SELECT status, json_extract(doc, '$.response.output.text') FROM spans WHERE "
                            "json_extract(doc, '$.attributes.custom.run') = ?", (marker,)).fetchall()
    assert len(rows) == 1
    status, text = rows[0]
    assert status in ("cancelled", "error") and text and REPLY_TEXT.startswith(text)


def test_the_access_key(tmp_path, upstream):
    key = "llmflow-proxy-key-" + uuid.uuid4().hex
    proxy = start_proxy(tmp_path / "data", tmp_path, UPSTREAM_OPENAI=upstream.url, PROXY_ACCESS_KEY=key)
    try:
        with pytest.raises(openai.AuthenticationError) as caught:
            sdk(proxy).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
        assert "X-LLMFlow-Key" in caught.value.message
        with pytest.raises(openai.AuthenticationError):
            sdk(proxy, **{"X-LLMFlow-Key": "wrong"}).chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
        marker = uuid.uuid4().hex
        call(sdk(proxy, **{"X-LLMFlow-Key": key}), marker)
        received = upstream.last("/chat/completions")
        assert "x-llmflow-key" not in received.headers  # removed before forwarding
        assert received.headers["authorization"] == "Bearer sk-fault-test"
    finally:
        proxy.stop()
    assert key not in proxy.log()


def test_a_full_disk_never_breaks_a_call_and_is_said_loudly(tmp_path, upstream):
    """The data directory on a tiny file system that fills up: calls go on at normal speed; what
    cannot be kept (store and spool share that disk) is counted and reported; room again, and
    recording resumes."""
    import subprocess

    data = tmp_path / "data"
    data.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(data)],
                             capture_output=True, text=True)
    assert mounted.returncode == 0, f"this test needs root to mount a tmpfs: {mounted.stderr}"
    proxy = None
    try:
        proxy = start_proxy(data, tmp_path, UPSTREAM_OPENAI=upstream.url)
        client = sdk(proxy)
        marker = uuid.uuid4().hex
        warm = [call(client, marker) for _ in range(5)]
        wait_until(lambda: (data / "llmflow.sqlite3").exists())
        time.sleep(1)
        filler = data / "filler"
        with open(filler, "wb") as handle:  # take every byte that is left
            try:
                while True:
                    handle.write(b"\0" * 65536)
                    handle.flush()
            except OSError:
                pass
        during = [call(client, marker) for _ in range(40)]
        assert statistics.median(during) < statistics.median(warm) * 3 + 0.05 and max(during) < 2.0
        wait_until(lambda: "LOST" in proxy.log(), timeout=30)
        filler.unlink()  # room again
        after = uuid.uuid4().hex
        for _ in range(5):
            call(client, after)

        def stored(tag):
            try:
                with sqlite3.connect(data / "llmflow.sqlite3") as conn:
                    return conn.execute("SELECT COUNT(*) FROM spans WHERE json_extract(doc, "
                                        "'$.attributes.custom.run') = ?", (tag,)).fetchone()[0]
            except sqlite3.Error:
                return -1

        wait_until(lambda: stored(after) == 5, timeout=60)
        assert 5 <= stored(marker) <= 45
    finally:
        if proxy is not None:
            proxy.stop()
        subprocess.run(["umount", "-l", str(data)], capture_output=True)


def test_the_access_key_as_the_https_proxy_password(tmp_path, upstream):
    import json
    import os
    import subprocess
    import sys

    key = "llmflow-proxy-key-" + uuid.uuid4().hex
    data = tmp_path / "data"
    proxy = start_proxy(data, tmp_path, UPSTREAM_OPENAI=upstream.url, PROXY_ACCESS_KEY=key)
    script = ("import sys; from openai import OpenAI; c = OpenAI(api_key='sk-x', max_retries=0, timeout=10)\n"
              "print(c.chat.completions.create(model='gpt-4o-mini', messages=[{'role': 'user', "
              "'content': 'hi'}]).choices[0].message.content)")
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["SSL_CERT_FILE"] = str(data / "mitmproxy" / "ca-bundle.pem")
    try:
        with_key = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                                  env={**env, "HTTPS_PROXY": f"http://llmflow:{key}@127.0.0.1:{proxy.intercept_port}"})
        assert with_key.returncode == 0, with_key.stderr
        assert with_key.stdout.strip() == REPLY_TEXT
        without = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                                 env={**env, "HTTPS_PROXY": f"http://127.0.0.1:{proxy.intercept_port}"})
        assert without.returncode != 0  # refused at CONNECT (407): no call went upstream
        assert "407" in without.stderr or "Proxy Authentication Required" in without.stderr
    finally:
        proxy.stop()
    assert "proxy-authorization" not in json.dumps([r.headers for r in upstream.requests]).lower()
    assert key not in proxy.log()
