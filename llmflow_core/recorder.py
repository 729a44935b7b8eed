"""The recorder: a child process of the proxy that turns its raw exchanges into stored spans.

mitmproxy runs its whole proxy core on one event loop, under Python's GIL. When building spans
(parsing, redaction, pricing) and writing them ran on threads of the proxy process, they took
that GIL from the event loop: under load the proxy served fewer requests per second than bare
mitmdump, and the event loop waited behind the builder (p99 latency). So the proxy only copies
each call into an ``Exchange`` and hands it over; a separate process, on another core, runs the
``SpanWriter`` (builder + store threads, spool, retention, OTLP forwarding).

Parent side (``RecorderProcess``, used by the addon):
- ``submit`` appends to an in-memory deque (never blocks the event loop);
- a sender thread pickles what has gathered as one frame and writes it to the child's stdin
  (the write releases the GIL; a full pipe only holds up that thread);
- if the child dies, it is restarted and the frame it did not get is sent again; the new
  child replays the spool the old one left. Spans are dropped (counted, logged, reported in the
  status file) only when the deque is full — the child gone for long, or far behind.

Child side (``python -m llmflow_core.recorder``): reads frames until end of input, submits each
exchange to its writer (waiting while the writer's queue is full: the pipe then fills and the
parent's deque absorbs the burst), then drains the writer and exits. It ignores SIGINT and
SIGTERM — Ctrl-C reaches the whole process group — and stops when the proxy closes the pipe,
so calls the proxy records while shutting down still reach the store; if the proxy is killed
outright, the pipe closes too.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from llmflow_core import config as llmflow_config

log = logging.getLogger("llmflow.recorder")
HEADER = struct.Struct("!I")  # each frame: its length, then a pickle
ROOT = Path(__file__).resolve().parent.parent
GATHER_SECONDS = 0.02  # let calls gather into one frame: one wake-up (and notify) per frame, not per call
MAX_FRAME_ITEMS = 512
F_SETPIPE_SZ = 1031  # Linux fcntl: a 1 MB pipe absorbs bursts while the child is busy
PIPE_BYTES = 1 << 20
NICENESS = 4
MAX_RESTART_DELAY = 30.0
STOP_ATTEMPTS = 3  # restarts tried for a batch once the proxy is stopping
STOP_GRACE = 5.0  # beyond the writer's own stop timeout, for the child to exit


@dataclass
class RecorderStats:
    queued: int = 0
    sent: int = 0
    dropped: int = 0
    restarts: int = 0


class RecorderProcess:
    """The proxy's side of the recorder: ``submit`` exchanges; ``stop`` drains and waits."""

    def __init__(self, config: llmflow_config.Config, *, status_path: Path | None = None,
                 max_queue: int = 50_000, restart_delay: float = 1.0,
                 stop_timeout: float = 10.0) -> None:
        self._setup = {"config": config, "status_path": status_path, "proxy_pid": os.getpid(),
                       "stop_timeout": stop_timeout}
        self.max_queue = max_queue
        self.restart_delay = restart_delay
        self.stop_timeout = stop_timeout
        self.stats = RecorderStats()
        self._items: deque[Any] = deque()
        self._wake = threading.Event()
        self._stopping = False
        self._broken = False
        self._child: subprocess.Popen[bytes] | None = None
        self._sender = threading.Thread(target=self._send_loop, name="llmflow-recorder-pipe",
                                        daemon=True)

    # -- proxy event loop ------------------------------------------------------------------------
    def submit(self, item: Any) -> bool:
        """Queue an exchange for recording. Never blocks; False when it had to be dropped."""
        if len(self._items) >= self.max_queue:
            self._drop(1, "the recorder process is far behind or not running")
            return False
        self._items.append(item)
        self.stats.queued += 1
        if not self._wake.is_set():
            self._wake.set()
        return True

    @property
    def pending(self) -> int:
        return len(self._items)

    @property
    def child_pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> "RecorderProcess":
        self._start_child()
        self._sender.start()
        return self

    def stop(self) -> None:
        """Send what is queued, close the pipe, wait for the child to store it and exit."""
        if not self._sender.is_alive() and self._child is None:
            if self._items:  # never started (the proxy failed to start): nothing can store them
                self._drop(len(self._items), "the proxy stopped before its recorder started")
                self._items.clear()
            return
        self._stopping = True
        self._wake.set()
        deadline = time.monotonic() + self.stop_timeout + STOP_GRACE
        self._sender.join(max(0.1, deadline - time.monotonic()))
        if self._sender.is_alive():
            log.error("recorder: %d call(s) not handed over at shutdown", len(self._items))
        child = self._child
        if child is None:
            return
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("recorder process %d did not finish in time: killing it", child.pid)
            child.kill()
            child.wait()

    # -- sender thread ---------------------------------------------------------------------------
    def _send_loop(self) -> None:
        while True:
            self._wake.wait(0.5)
            if self._items and not self._stopping:
                time.sleep(GATHER_SECONDS)
            # cleared only now: calls submitted while gathering find it set and skip notifying
            self._wake.clear()
            batch = []
            while self._items and len(batch) < MAX_FRAME_ITEMS:
                batch.append(self._items.popleft())
            if batch:
                self._send(batch)
                if self._items:
                    self._wake.set()
            elif self._stopping:
                break
        if self._child is not None and self._child.stdin is not None:
            try:
                self._child.stdin.close()  # end of input: the child drains its writer and exits
            except OSError:
                pass

    def _send(self, batch: list[Any]) -> None:
        try:
            data = pickle.dumps((batch, self.stats.dropped), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            # one unpicklable exchange must not cost the others
            log.exception("recorder: could not serialize a batch; sending one by one")
            for item in batch:
                try:
                    pickle.dumps(item)
                except Exception:
                    self._drop(1, "an exchange could not be serialized")
                    continue
                self._send([item])
            return
        attempts = 0
        while not self._broken:
            child = self._child
            if child is not None and child.stdin is not None:
                try:
                    _write_all(child.stdin.fileno(), HEADER.pack(len(data)))
                    _write_all(child.stdin.fileno(), data)
                    self.stats.sent += len(batch)
                    return
                except (OSError, ValueError) as exc:
                    log.error("recorder process %d is gone (%s): starting a new one", child.pid, exc)
            attempts += 1
            if self._stopping and attempts > STOP_ATTEMPTS:
                self._broken = True  # shutting down and no child will take them: stop trying
                break
            # a child that keeps failing (a broken install) is retried ever more slowly
            time.sleep(min(MAX_RESTART_DELAY, self.restart_delay * 2 ** min(attempts - 1, 6)))
            self._restart()
        self._drop(len(batch), "the recorder process could not be restarted at shutdown")

    def _restart(self) -> None:
        old = self._child
        if old is not None:
            try:
                old.kill()
            except OSError:
                pass
            old.wait()
        self.stats.restarts += 1
        self._start_child()

    def _start_child(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        try:
            child = subprocess.Popen([sys.executable, "-m", "llmflow_core.recorder"],
                                     stdin=subprocess.PIPE, env=env, cwd=str(ROOT), close_fds=True)
        except OSError as exc:
            log.error("recorder: could not start the recorder process: %s", exc)
            self._child = None
            return
        assert child.stdin is not None
        try:
            import fcntl

            fcntl.fcntl(child.stdin.fileno(), F_SETPIPE_SZ, PIPE_BYTES)
        except (ImportError, OSError):
            pass  # the default 64 KB pipe works, it just fills sooner
        self._child = child
        setup = pickle.dumps(self._setup, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            _write_all(child.stdin.fileno(), HEADER.pack(len(setup)) + setup)
        except OSError as exc:
            log.error("recorder: the recorder process exited at start: %s", exc)

    def _drop(self, count: int, why: str) -> None:
        before = self.stats.dropped
        self.stats.dropped += count
        if before == 0 or before // 1000 != self.stats.dropped // 1000:
            log.error("LOST %d span(s) so far: %s. Calls are still forwarded.", self.stats.dropped, why)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_exact(stream: Any, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = stream.read(left)
        if not chunk:
            return None  # end of input
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_frame(stream: Any) -> Any | None:
    header = _read_exact(stream, HEADER.size)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    data = _read_exact(stream, size)
    return None if data is None else pickle.loads(data)


# -- child side -------------------------------------------------------------------------------
def make_writer(config: llmflow_config.Config, *, status_path: Path | None = None,
                status_pid: int | None = None) -> tuple[Any, Callable[[], None]]:
    """The proxy's span writer, as configured: build with ``capture.build_span``, store in
    the configured store, spool beside it, prune by the retention settings, mark proxied
    duplicates of SDK spans, forward to OTEL_EXPORTER_OTLP_ENDPOINT. Returns the writer and a
    function that releases the rest (the forwarder) after ``writer.stop()``."""
    # Imported here, in the child: the proxy process itself never loads parsers, prices, stores.
    from llmflow_core.capture import CaptureOptions, build_span
    from llmflow_core.forward import Forwarder, parse_headers
    from llmflow_core.spool import Spool
    from llmflow_core.store import SpanStore, apply_retention, open_store
    from llmflow_core.writer import SpanWriter

    options = CaptureOptions(max_body_size=config.max_response_size,
                             service_name=config.service_name,
                             free_providers=config.free_providers)
    forwarder = (Forwarder(config.otlp_forward_endpoint, parse_headers(config.otlp_forward_headers))
                 if config.otlp_forward_endpoint else None)

    def prune(store: SpanStore) -> None:
        """RETENTION_DAYS / RETENTION_PAYLOAD_DAYS, hourly (MongoDB also has a TTL index)."""
        deleted, dropped = apply_retention(store, config)
        if deleted or dropped:
            log.info("retention: %d span(s) deleted, %d payload(s) dropped", deleted, dropped)

    writer = SpanWriter(lambda: open_store(config, writer=True),
                        lambda exchange: build_span(exchange, options),
                        spool=Spool(config.data_dir / "spool", config.spool_max_size),
                        maintenance=prune, prepare=mark_proxied_duplicates,
                        status_path=status_path, status_pid=status_pid,
                        on_written=forwarder.submit if forwarder else None)
    return writer, (forwarder.close if forwarder else lambda: None)


def mark_proxied_duplicates(store: Any, spans: list[Any]) -> list[Any]:
    """A proxied call whose parent is the app's own SDK span of the same call (traceparent)
    is a second record of that call: mark it, so totals count the call once."""
    from llmflow_core.otlp import mark_duplicates

    parents = {span.parent_span_id for span in spans if span.parent_span_id and span.kind == "llm"}
    if not parents:
        return spans
    stored = [found for found in (store.get_span(parent) for parent in parents) if found]
    return mark_duplicates(spans, stored) if stored else spans


def run_child(stream: Any) -> int:
    """Read the setup frame, then exchanges until end of input; store them; drain; return."""
    setup = _read_frame(stream)
    if setup is None:
        return 0
    config: llmflow_config.Config = setup["config"]
    logging.basicConfig(level=config.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s[recorder]: %(message)s")
    writer, close = make_writer(config, status_path=setup["status_path"],
                                status_pid=setup["proxy_pid"])
    writer.start()
    upstream_dropped = 0
    try:
        while (frame := _read_frame(stream)) is not None:
            exchanges, dropped = frame
            if dropped > upstream_dropped:  # lost in the proxy before they got here
                writer.count_dropped(dropped - upstream_dropped)
                upstream_dropped = dropped
            for exchange in exchanges:
                writer.submit(exchange, block=True)
    finally:
        writer.stop(timeout=setup["stop_timeout"])
        close()
        stats = writer.stats
        log.info("recorder stopped: %d span(s) written, %d spooled, %d dropped",
                 stats.written, stats.spooled, stats.dropped)
    return 0


def main() -> int:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # stop at end of input, after the proxy's last call
    try:
        # The user's calls come first: when the cores are busy, the kernel runs the proxy ahead
        # of the recorder, which catches up in the gaps (its input is buffered, nothing is lost).
        os.nice(NICENESS)
    except OSError:
        pass
    try:
        return run_child(sys.stdin.buffer)
    finally:
        logging.shutdown()


if __name__ == "__main__":
    sys.exit(main())
