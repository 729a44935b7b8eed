"""The batch writer: a bounded queue drained by one thread that builds spans and stores them.

The proxy's hooks call ``submit`` (never blocks, never raises); the thread turns raw exchanges
into spans and writes them in batches. When the store fails, the batch is kept and retried with
back-off while new work waits in the queue; ``stop`` drains what is left. What could not be
queued is counted in ``dropped`` and logged loudly: the user's call is never held up for it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from llmflow_core.spans import Span
from llmflow_core.store.base import SpanStore, StoreError

log = logging.getLogger("llmflow.writer")


@dataclass
class WriterStats:
    queued: int = 0
    written: int = 0
    duplicates: int = 0
    dropped: int = 0
    build_failures: int = 0
    store_failures: int = 0
    last_error: str | None = None


class SpanWriter:
    def __init__(self, store_factory: Callable[[], SpanStore],
                 build: Callable[[Any], Span] = lambda span: span, *,
                 batch_size: int = 256, flush_interval: float = 0.2, max_queue: int = 20000,
                 max_backoff: float = 5.0,
                 maintenance: Callable[[SpanStore], Any] | None = None,
                 maintenance_every: float = 3600.0) -> None:
        self._store_factory = store_factory
        self._store: SpanStore | None = None
        self._build = build
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_backoff = max_backoff
        self.stats = WriterStats()
        # Periodic store upkeep (the retention prune) runs on this thread, between batches.
        self._maintenance = maintenance
        self._maintenance_every = maintenance_every
        self._next_maintenance = time.monotonic() + min(60.0, maintenance_every)
        self._stopping = threading.Event()
        self._idle = threading.Condition()
        self._busy = False
        self._thread = threading.Thread(target=self._run, name="llmflow-writer", daemon=True)

    # -- producer side (proxy event loop) ------------------------------------------------------
    def submit(self, item: Any) -> bool:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.stats.dropped += 1
            if self.stats.dropped == 1 or self.stats.dropped % 1000 == 0:
                log.error("span queue full: %d span(s) dropped so far (store: %s)",
                          self.stats.dropped, self.stats.last_error)
            return False
        self.stats.queued += 1
        return True

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> "SpanWriter":
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Drain the queue (waiting at most ``timeout`` seconds for the store), then stop."""
        self._stopping.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("writer stopped with %d span(s) not written (store: %s)",
                      self.pending, self.stats.last_error)
        if self._store is not None:
            self._store.close()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is written (for tests and shutdown)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._queue.qsize() or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(min(remaining, 0.05))
        return True

    # -- consumer side (writer thread) ---------------------------------------------------------
    def _take_batch(self) -> list[Any]:
        batch: list[Any] = []
        try:
            batch.append(self._queue.get(timeout=self.flush_interval))
        except queue.Empty:
            return batch
        with self._idle:
            self._busy = True
        while len(batch) < self.batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _build_all(self, items: list[Any]) -> list[Span]:
        spans = []
        for item in items:
            try:
                spans.append(self._build(item))
            except Exception:
                self.stats.build_failures += 1
                log.exception("could not build a span; the call itself was not affected")
        return spans

    def _write(self, spans: list[Span]) -> bool:
        try:
            if self._store is None:
                self._store = self._store_factory()
            new = self._store.write_batch(spans)
        except (StoreError, OSError) as exc:
            self.stats.store_failures += 1
            self.stats.last_error = str(exc)
            return False
        except Exception as exc:  # any driver error: keep the spans, retry
            self.stats.store_failures += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("unexpected store error")
            return False
        self.stats.written += new
        self.stats.duplicates += len(spans) - new
        if self.stats.last_error is not None:
            log.warning("store is back; writing again")
            self.stats.last_error = None
        return True

    def _maybe_maintain(self) -> None:
        if self._maintenance is None or time.monotonic() < self._next_maintenance:
            return
        self._next_maintenance = time.monotonic() + self._maintenance_every
        try:
            if self._store is None:
                self._store = self._store_factory()
            self._maintenance(self._store)
        except Exception:
            log.exception("store maintenance failed; will try again later")

    def _run(self) -> None:
        backoff = 0.05
        while True:
            self._maybe_maintain()
            items = self._take_batch()
            if not items:
                with self._idle:
                    self._busy = False
                    self._idle.notify_all()
                if self._stopping.is_set():
                    return
                continue
            spans = self._build_all(items)
            while spans and not self._write(spans):
                if self.stats.store_failures == 1 or self.stats.store_failures % 20 == 0:
                    log.error("store unavailable (%s); %d span(s) waiting", self.stats.last_error,
                              len(spans) + self.pending)
                if self._stopping.is_set() and backoff >= self.max_backoff:
                    log.error("giving up on %d span(s) at shutdown", len(spans) + self.pending)
                    self.stats.dropped += len(spans)
                    spans = []
                    break
                time.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
            else:
                backoff = 0.05
            with self._idle:
                self._busy = False
                self._idle.notify_all()
