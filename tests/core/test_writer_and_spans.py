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


def test_writer_keeps_spans_while_the_store_is_down_and_writes_them_later(tmp_path):
    store = FlakyStore(tmp_path / "s.sqlite3")
    writer = SpanWriter(lambda: store, flush_interval=0.02, max_backoff=0.05).start()
    for _ in range(30):
        assert writer.submit(make_span())
    time.sleep(0.3)
    assert store.stats().spans == 0 and writer.stats.store_failures > 0
    store.down = False
    assert writer.flush(5)
    writer.stop()
    assert SQLiteStore(tmp_path / "s.sqlite3").stats().spans == 30
    assert writer.stats.written == 30 and writer.stats.dropped == 0


def test_submit_never_blocks_and_counts_what_it_drops(tmp_path):
    gate = threading.Event()

    class Stuck(SQLiteStore):
        def write_batch(self, spans):
            gate.wait(5)
            return super().write_batch(spans)

    writer = SpanWriter(lambda: Stuck(tmp_path / "s.sqlite3"), max_queue=5, batch_size=1).start()
    started = time.perf_counter()
    results = [writer.submit(make_span()) for _ in range(50)]
    assert time.perf_counter() - started < 0.5
    assert results.count(False) == writer.stats.dropped >= 40
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
