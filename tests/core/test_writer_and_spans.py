import os
import threading
import time
from datetime import datetime, timezone

import pytest

from llmflow_core.spans import Span
from llmflow_core.store import StoreError
from llmflow_core.store.sqlite import SQLiteStore
from llmflow_core.writer import SpanWriter
from tests.support.factories import make_span


def test_span_ids_are_validated():
    span = make_span()
    with pytest.raises(ValueError):
        span.with_changes(trace_id="not-hex")
    with pytest.raises(ValueError):
        span.with_changes(span_id="ABCDEF0123456789")


def test_times_are_utc_milliseconds_and_round_trip():
    moment = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
    span = make_span(start=moment)
    assert span.start_time.microsecond == 678000
    assert Span.from_document(span.to_json()) == span
    assert Span.from_document(span.to_document()) == span
    assert span.to_json()["startTime"] == "2026-01-02T03:04:05.678Z"


class FlakyStore(SQLiteStore):
    """Fails while ``down`` is set, like a store that went away."""

    down = True

    def write_batch(self, spans):
        if self.down:
            raise StoreError("store is down")
        return super().write_batch(spans)


def test_spans_go_to_the_spool_while_the_store_is_down_and_come_back(tmp_path):
    from llmflow_core.spool import Spool

    store = FlakyStore(tmp_path / "s.sqlite3")
    spool = Spool(tmp_path / "spool", max_bytes=10_000_000)
    writer = SpanWriter(lambda: store, spool=spool, flush_interval=0.02, retry_interval=0.05).start()
    spans = [make_span() for _ in range(300)]
    for span in spans:
        assert writer.submit(span)
    assert writer.flush(5)
    assert store.stats().spans == 0 and writer.stats.spooled == 300 and spool.bytes > 0
    store.down = False
    deadline = time.monotonic() + 10
    while SQLiteStore(tmp_path / "s.sqlite3").stats().spans < 300 and time.monotonic() < deadline:
        time.sleep(0.05)
    writer.stop()
    assert SQLiteStore(tmp_path / "s.sqlite3").stats().spans == 300
    assert writer.stats.replayed == 300 and writer.stats.dropped == 0
    assert spool.empty and list((tmp_path / "spool").iterdir()) == []


def test_spool_survives_a_restart(tmp_path):
    from llmflow_core.spool import Spool

    store = FlakyStore(tmp_path / "s.sqlite3")
    first = SpanWriter(lambda: store, spool=Spool(tmp_path / "spool", 10_000_000), flush_interval=0.02).start()
    for _ in range(50):
        first.submit(make_span())
    first.stop(timeout=2)  # store still down: everything ends up on disk
    assert first.stats.spooled == 50 and store.stats().spans == 0
    store.down = False
    second = SpanWriter(lambda: store, spool=Spool(tmp_path / "spool", 10_000_000), flush_interval=0.02).start()
    deadline = time.monotonic() + 10
    while store.stats().spans < 50 and time.monotonic() < deadline:
        time.sleep(0.05)
    second.stop()
    assert store.stats().spans == 50 and second.stats.replayed == 50


def test_a_full_spool_drops_loudly_and_counts(tmp_path, caplog):
    from llmflow_core.spool import Spool

    store = FlakyStore(tmp_path / "s.sqlite3")
    writer = SpanWriter(lambda: store, spool=Spool(tmp_path / "spool", max_bytes=20_000),
                        flush_interval=0.02, batch_size=10).start()
    for _ in range(100):
        writer.submit(make_span())
    assert writer.flush(5)
    writer.stop(timeout=1)
    assert writer.stats.dropped > 0
    assert writer.stats.spooled + writer.stats.dropped == 100
    assert "LOST" in caplog.text


def test_replaying_twice_duplicates_nothing(tmp_path):
    from llmflow_core.spool import Spool

    spool = Spool(tmp_path / "spool", 10_000_000)
    spans = [make_span() for _ in range(20)]
    spool.append(spans)
    segment = spool.segments()[0]
    store = SQLiteStore(tmp_path / "s.sqlite3")
    store.write_batch(list(spool.read(segment))[:10])  # a crash after half was written
    writer = SpanWriter(lambda: store, spool=spool, flush_interval=0.02).start()
    deadline = time.monotonic() + 5
    while not spool.empty and time.monotonic() < deadline:
        time.sleep(0.05)
    writer.stop()
    assert store.stats().spans == 20 and writer.stats.duplicates == 10


def test_proxies_sharing_a_spool_each_replay_a_segment_once(tmp_path):
    """PROXY_WORKERS: several processes share the spool directory. A segment is claimed by one
    of them (an atomic rename); a claim whose process is gone is replayable again."""
    import subprocess
    import sys

    from llmflow_core.spool import Spool

    first = Spool(tmp_path / "spool", 10_000_000)
    second = Spool(tmp_path / "spool", 10_000_000)
    second.owner = os.getppid()  # another process, alive
    first.append([make_span() for _ in range(5)])
    segment = first.segments()[0]
    claimed = second.claim(segment)
    assert claimed is not None and claimed.exists()
    assert first.claim(segment) is None  # taken: the first process skips it
    assert first.segments() == []  # and does not list it while its claimer lives
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    second.owner = int(dead.stdout)  # the claimer died mid-replay
    claimed = claimed.rename(claimed.with_name(claimed.name.rsplit("-", 1)[0] + f"-{second.owner}"))
    assert first.segments() == [claimed]
    mine = first.claim(claimed)
    assert mine is not None and len(list(first.read(mine))) == 5
    first.remove(mine)
    assert first.segments() == [] and not any((tmp_path / "spool").iterdir())


def test_a_torn_last_line_is_skipped(tmp_path):
    from llmflow_core.spool import Spool

    spool = Spool(tmp_path / "spool", 10_000_000)
    spool.append([make_span(), make_span()])
    segment = spool.segments()[0]
    with open(segment, "ab") as handle:
        handle.write(b'{"traceId": "abc", "spa')  # the process died mid-write
    assert len(list(spool.read(segment))) == 2


def test_submit_never_blocks_and_counts_what_it_drops(tmp_path):
    gate = threading.Event()

    class Stuck(SQLiteStore):
        def write_batch(self, spans):
            gate.wait(5)
            return super().write_batch(spans)

    writer = SpanWriter(lambda: Stuck(tmp_path / "s.sqlite3"), max_queue=5, max_pending=1,
                        batch_size=1).start()
    started = time.perf_counter()
    results = [writer.submit(make_span()) for _ in range(50)]
    assert time.perf_counter() - started < 0.5
    # no spool configured: what does not fit in memory is dropped and counted, never waited for
    assert results.count(False) > 0
    deadline = time.monotonic() + 3
    while writer.stats.dropped < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.stats.dropped >= 40  # at most ~8 fit in the queue, the hand-over and the store
    gate.set()
    writer.stop()


def test_a_span_that_cannot_be_built_does_not_stop_the_others(tmp_path):
    def build(item):
        if item == "bad":
            raise ValueError("unparseable")
        return item

    store = SQLiteStore(tmp_path / "s.sqlite3")
    writer = SpanWriter(lambda: store, build, flush_interval=0.02).start()
    writer.submit("bad")
    writer.submit(make_span())
    assert writer.flush(5)
    writer.stop()
    assert writer.stats.build_failures == 1 and writer.stats.written == 1


def test_maintenance_runs_on_the_writer_thread(tmp_path):
    from datetime import timedelta

    from tests.support.factories import T0

    store = SQLiteStore(tmp_path / "s.sqlite3")
    store.write_batch([make_span(start=T0 - timedelta(days=40)), make_span(start=T0)])
    ran = threading.Event()

    def prune(current):
        current.prune(T0 - timedelta(days=30))
        ran.set()

    writer = SpanWriter(lambda: store, flush_interval=0.01, maintenance=prune, maintenance_every=0.05)
    writer._next_maintenance = 0  # due now
    writer.start()
    assert ran.wait(5)
    writer.stop()
    assert SQLiteStore(tmp_path / "s.sqlite3").stats().spans == 1
