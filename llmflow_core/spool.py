"""A bounded, durable on-disk spool for spans the store could not take (yet).

Spans are appended as JSON lines to segment files in a directory; a segment is closed when it
reaches ``SEGMENT_BYTES`` and replayed (oldest first) once the store answers again, then
deleted. Replaying a segment twice is harmless: stores ignore a span id they already hold, so
a crash between "written to the store" and "segment deleted" duplicates nothing.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Iterator, Sequence

from llmflow_core.spans import Span

log = logging.getLogger("llmflow.spool")
SEGMENT_BYTES = 4 * 1024 * 1024
SUFFIX = ".jsonl"
# A segment being replayed is renamed to <segment>.claimed-<pid>: with several proxies sharing
# the directory (PROXY_WORKERS), each segment is replayed by one of them. A claim whose process
# is gone (crashed mid-replay) is replayable again.
CLAIMED = ".claimed-"


class SpoolFull(Exception):
    """The spool is at its size limit: the spans were not kept."""


class Spool:
    def __init__(self, directory: str | Path, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._current: Path | None = None
        self._current_size = 0
        self._counter = 0
        self.owner = os.getpid()  # names our claims on segments
        self.bytes = sum(p.stat().st_size for p in self._segments())

    # -- writing ---------------------------------------------------------------------------------
    def append(self, spans: Sequence[Span]) -> None:
        """Durably keep ``spans`` (fsync'd before returning), or raise SpoolFull / OSError."""
        data = b"".join(json.dumps(span.to_json(), ensure_ascii=False, default=str).encode() + b"\n"
                        for span in spans)
        with self._lock:
            if self.max_bytes and self.bytes + len(data) > self.max_bytes:
                raise SpoolFull(f"spool at {self.bytes} of {self.max_bytes} bytes")
            if self._current is None or self._current_size >= SEGMENT_BYTES:
                self._counter += 1
                self._current = self.directory / f"{time.time_ns():020d}-{os.getpid()}-{self._counter}{SUFFIX}.open"
                self._current_size = 0
            with open(self._current, "ab") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            self._current_size += len(data)
            self.bytes += len(data)

    def _seal(self) -> None:
        """Close the segment being written, so it can be replayed."""
        if self._current is not None:
            if self._current.exists():
                self._current.rename(self._current.with_suffix(""))
            self._current = None
            self._current_size = 0

    # -- replaying -------------------------------------------------------------------------------
    def _segments(self) -> list[Path]:
        """Replayable segments: sealed ones, and ``.open`` ones no live process is writing
        (left by a crash; several proxies may share the directory)."""
        found = []
        for path in self.directory.iterdir():
            if path.name.endswith(SUFFIX):
                found.append(path)
            elif path.name.endswith(SUFFIX + ".open") and path != self._current:
                if _writer_gone(path):
                    found.append(path)
            elif CLAIMED in path.name:
                claimer = path.name.rsplit(CLAIMED, 1)[1]
                if claimer == str(self.owner) or _process_gone(claimer):
                    found.append(path)
        return sorted(found)

    def claim(self, segment: Path) -> Path | None:
        """Take ``segment`` for replaying (an atomic rename); None if another process took it
        first. The claimed path is what to ``read`` and ``remove``."""
        name = segment.name
        if CLAIMED in name:
            if name.rsplit(CLAIMED, 1)[1] == str(self.owner):
                return segment
            name = name.rsplit(CLAIMED, 1)[0]
        claimed = segment.with_name(f"{name}{CLAIMED}{self.owner}")
        try:
            os.rename(segment, claimed)
        except FileNotFoundError:
            return None
        return claimed

    @property
    def empty(self) -> bool:
        return self.bytes == 0 and self._current is None

    def segments(self) -> list[Path]:
        """Segments to replay, oldest first (the one being written is sealed first)."""
        with self._lock:
            self._seal()
            return self._segments()

    def read(self, segment: Path) -> Iterator[Span]:
        with open(segment, "rb") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    yield Span.from_document(json.loads(line))
                except (ValueError, KeyError, TypeError) as exc:
                    # a line cut by a crash mid-write: everything before it is intact
                    log.warning("spool %s line %d unreadable (%s); skipped", segment.name, number, exc)

    def remove(self, segment: Path) -> None:
        with self._lock:
            try:
                size = segment.stat().st_size
                segment.unlink()
            except FileNotFoundError:
                return
            self.bytes = max(0, self.bytes - size)


def _writer_gone(path: Path) -> bool:
    """True when the process named in an open segment's name is not running (or is us: a
    segment of ours that is not our current one was left by an earlier run with our pid)."""
    try:
        pid = int(path.name.split("-")[1])
    except (IndexError, ValueError):
        return True
    if pid == os.getpid():
        return True
    return _process_gone(pid)


def _process_gone(pid: int | str) -> bool:
    try:
        pid = int(pid)
    except ValueError:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
