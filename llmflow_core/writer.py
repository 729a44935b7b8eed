"""The batch writer: the proxy hands over raw exchanges, and they end up stored, always.

Two threads, so that a slow or dead store never backs up into the user's traffic:

- the *builder* takes exchanges off a bounded in-memory queue (``submit`` never blocks), turns
  them into spans, and passes batches to the store thread; when the store thread is behind
  (store slow or down) the batch goes to the on-disk spool instead;
- the *store thread* writes batches to the store, and when it has nothing else to do, replays
  the spool (oldest first) — including what an earlier run left there.

Memory is bounded by the queue and the hand-over depth; disk by the spool's size. Spans are
lost only when the spool itself is full or its disk fails: they are counted in ``dropped`` and
logged loudly, and ``status()`` reports it (the dashboard shows it). ``stop`` drains everything
to the store, or to the spool when the store cannot take it in time.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from llmflow_core.spans import Span
from llmflow_core.spool import Spool, SpoolFull
from llmflow_core.store.base import SpanStore, StoreError

log = logging.getLogger("llmflow.writer")
REPLAY_BATCH = 500


@dataclass
class WriterStats:
    queued: int = 0
    written: int = 0
    duplicates: int = 0
    spooled: int = 0
    replayed: int = 0
    dropped: int = 0
    build_failures: int = 0
    store_failures: int = 0
    last_error: str | None = None
    store_ok: bool = True


class SpanWriter:
    def __init__(self, store_factory: Callable[[], SpanStore],
                 build: Callable[[Any], Span] = lambda span: span, *,
                 spool: Spool | None = None, batch_size: int = 256, flush_interval: float = 0.2,
                 max_queue: int = 20000, max_pending: int = 8, retry_interval: float = 2.0,
                 maintenance: Callable[[SpanStore], Any] | None = None,
                 maintenance_every: float = 3600.0, status_path: Path | None = None,
                 prepare: Callable[[SpanStore, list[Span]], list[Span]] | None = None,
                 on_written: Callable[[list[Span]], Any] | None = None,
                 status_pid: int | None = None, gather: float = 0.02) -> None:
        self._store_factory = store_factory
        self._store: SpanStore | None = None
        self._build = build
        self._spool = spool
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        # batches built and waiting for the store thread; bounded so a slow store spills to disk
        self._pending: queue.Queue[list[Span]] = queue.Queue(maxsize=max_pending)
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.retry_interval = retry_interval
        self.stats = WriterStats()
        self._stopping = threading.Event()
        self._built_all = threading.Event()
        self._idle = threading.Condition()
        self._busy = 0
        # Periodic store upkeep (the retention prune) runs on the store thread.
        self._maintenance = maintenance
        self._maintenance_every = maintenance_every
        self._next_maintenance = time.monotonic() + min(60.0, maintenance_every)
        self._status_path = status_path
        self._prepare = prepare  # last look at a batch with the store at hand, before writing
        self._on_written = on_written  # e.g. the OTLP forwarder: called after a batch is stored
        self._status_pid = status_pid or os.getpid()  # the proxy this writer records for
        # After the first span of a batch, wait this long for more: under load the store then
        # commits a few large batches instead of many small ones (a commit costs more than a row).
        self.gather = gather
        self._next_status = 0.0
        self._started = time.time()
        self._builder = threading.Thread(target=self._build_loop, name="llmflow-builder", daemon=True)
        self._writer = threading.Thread(target=self._store_loop, name="llmflow-store", daemon=True)

    # -- producer side (proxy event loop) ------------------------------------------------------
    def submit(self, item: Any, block: bool = False) -> bool:
        """Queue an exchange for recording; False when it had to be dropped. Never blocks
        unless ``block`` (the recorder process waits rather than drop: its input is a pipe)."""
        try:
            self._queue.put(item, block=block)
        except queue.Full:
            self._drop(1, "span queue full")
            return False
        self.stats.queued += 1
        return True

    def count_dropped(self, count: int) -> None:
        """Spans lost before they reached this writer (e.g. in the proxy): reported with ours."""
        self.stats.dropped += count

    @property
    def pending(self) -> int:
        return self._queue.qsize() + self._pending.qsize()

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> "SpanWriter":
        self._builder.start()
        self._writer.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Build what is queued, write it (or spool it), then stop. Waits at most ``timeout``."""
        deadline = time.monotonic() + timeout
        self._stopping.set()
        self._builder.join(max(0.1, deadline - time.monotonic()))
        self._writer.join(max(0.1, deadline - time.monotonic()))
        if self._writer.is_alive() or self._builder.is_alive():
            log.error("writer stopped with %d span(s) still in memory (store: %s)",
                      self.pending, self.stats.last_error)
        self._write_status(force=True)
        if self._store is not None:
            self._store.close()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far has left memory (stored or spooled)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._queue.qsize() or self._pending.qsize() or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(min(remaining, 0.05))
        return True

    def status(self) -> dict[str, Any]:
        return {**asdict(self.stats), "pending": self.pending,
                "spool_bytes": self._spool.bytes if self._spool else 0,
                "started": self._started, "updated": time.time(), "pid": self._status_pid,
                "host": socket.gethostname()}

    # -- builder thread --------------------------------------------------------------------------
    def _take(self) -> list[Any]:
        items: list[Any] = []
        try:
            items.append(self._queue.get(timeout=self.flush_interval))
        except queue.Empty:
            return items
        with self._idle:
            self._busy += 1  # from here until handed over, these spans are in flight
        deadline = time.monotonic() + self.gather
        while len(items) < self.batch_size:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    items.append(self._queue.get(timeout=left))
                except queue.Empty:
                    break
        return items

    def _build_loop(self) -> None:
        while True:
            items = self._take()
            if not items:
                if self._stopping.is_set():
                    self._built_all.set()
                    return
                continue
            try:
                spans = []
                for item in items:
                    try:
                        spans.append(self._build(item))
                    except Exception:
                        self.stats.build_failures += 1
                        log.exception("could not build a span; the call itself was not affected")
                if spans:
                    self._hand_over(spans)
            finally:
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()

    def _hand_over(self, spans: list[Span]) -> None:
        try:
            self._pending.put_nowait(spans)
        except queue.Full:  # the store is slow or down: keep them on disk instead
            self._to_spool(spans)

    def _to_spool(self, spans: list[Span]) -> None:
        if self._spool is None:
            self._drop(len(spans), f"store unavailable and no spool ({self.stats.last_error})")
            return
        try:
            self._spool.append(spans)
            self.stats.spooled += len(spans)
        except SpoolFull as exc:
            self._drop(len(spans), str(exc))
        except OSError as exc:
            self._drop(len(spans), f"spool write failed: {exc}")

    def _drop(self, count: int, why: str) -> None:
        before = self.stats.dropped
        self.stats.dropped += count
        # loud, but not a line per span: the first, then every 1000
        if before == 0 or before // 1000 != self.stats.dropped // 1000:
            log.error("LOST %d span(s) so far: %s. Calls are still forwarded.", self.stats.dropped, why)

    # -- store thread ----------------------------------------------------------------------------
    def _write(self, spans: list[Span]) -> bool:
        try:
            if self._store is None:
                self._store = self._store_factory()
            if self._prepare is not None:
                spans = self._prepare(self._store, spans)
            new = self._store.write_batch(spans)
        except Exception as exc:  # StoreError, OSError, or any driver error
            self.stats.store_failures += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, StoreError) else str(exc)
            if self.stats.store_ok:
                log.error("store unavailable (%s): spooling spans to disk", self.stats.last_error)
            self.stats.store_ok = False
            return False
        self.stats.written += new
        self.stats.duplicates += len(spans) - new
        if self._on_written is not None:
            try:
                self._on_written(spans)
            except Exception:
                log.exception("after-write hook failed (the spans are stored)")
        if not self.stats.store_ok:
            log.warning("store is back: writing again")
            self.stats.store_ok = True
            self.stats.last_error = None
        return True

    def _replay(self) -> None:
        """Move the spool back into the store, oldest first, while the store takes it."""
        if self._spool is None or self._spool.empty:
            return
        for found in self._spool.segments():
            segment = self._spool.claim(found)
            if segment is None:
                continue  # another proxy process is replaying it
            batch: list[Span] = []
            for span in self._spool.read(segment):
                batch.append(span)
                if len(batch) >= REPLAY_BATCH:
                    if not self._write(batch):
                        return
                    self.stats.replayed += len(batch)
                    batch = []
            if batch:
                if not self._write(batch):
                    return
                self.stats.replayed += len(batch)
            self._spool.remove(segment)
            if not self._pending.empty():
                return  # fresh spans first; the rest of the spool next time round

    def _store_loop(self) -> None:
        next_retry = 0.0
        while True:
            self._maybe_maintain()
            self._write_status()
            try:
                spans = self._pending.get(timeout=self.flush_interval)
            except queue.Empty:
                spans = None
            if spans is not None:
                with self._idle:
                    self._busy += 1
                try:
                    if not self.stats.store_ok and time.monotonic() < next_retry:
                        self._to_spool(spans)  # known to be down: don't wait on it again yet
                    elif not self._write(spans):
                        self._to_spool(spans)
                        next_retry = time.monotonic() + self.retry_interval
                finally:
                    with self._idle:
                        self._busy -= 1
                        self._idle.notify_all()
                continue
            if self._stopping.is_set() and self._built_all.is_set() and self._pending.empty():
                if self.stats.store_ok:
                    self._replay()
                return
            if time.monotonic() >= next_retry:
                self._replay()
                if not self.stats.store_ok:
                    next_retry = time.monotonic() + self.retry_interval

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

    def _write_status(self, force: bool = False) -> None:
        """A small JSON file the dashboard reads to show each proxy's health."""
        if self._status_path is None or (not force and time.monotonic() < self._next_status):
            return
        self._next_status = time.monotonic() + 2.0
        try:
            tmp = self._status_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.status()))
            tmp.replace(self._status_path)
        except OSError as exc:
            log.warning("could not write %s: %s", self._status_path, exc)
