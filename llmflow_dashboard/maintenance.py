"""What the maintenance commands share (``stats``, ``prune``, ``export_spans``, ``import_spans``,
``check`` in management/commands/): disk sizes, SQLite space reclaim, a progress bar, JSONL
import and the configuration checks. Everything goes through the store contract; only disk
sizes and the reclaim look at the SQLite file itself.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator
from urllib.parse import urlsplit

from llmflow_core.config import Config
from llmflow_core.spans import Span
from llmflow_core.store import SpanQuery, SpanStore, StoreError, StoreStats
from llmflow_dashboard.queries import parse_when

SQLITE_SUFFIXES = ("", "-wal", "-shm")
CA_CERT = Path("mitmproxy") / "mitmproxy-ca-cert.pem"
INCREMENTAL = 2  # PRAGMA auto_vacuum value
FTS_TABLE = "spans_fts"  # SQLiteStore's full-text index (llmflow_core/store/sqlite.py)


# -- sizes and places ----------------------------------------------------------------------------
def human_bytes(size: int | None) -> str:
    """``12.3 MB`` (binary units, like MAX_RESPONSE_SIZE); ``unknown`` for None."""
    if size is None:
        return "unknown"
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"  # pragma: no cover - the loop always returns


def sqlite_path(target: SpanStore) -> Path | None:
    """The SQLite file behind a store (None for MongoDB or an in-memory database)."""
    path = getattr(target, "path", None)
    if target.name != "sqlite" or not path or path == ":memory:":
        return None
    return Path(path)


def sqlite_files(path: Path) -> dict[str, int]:
    """Bytes on disk of the database file, its write-ahead log and shared-memory index."""
    sizes = {}
    for suffix in SQLITE_SUFFIXES:
        candidate = Path(f"{path}{suffix}")
        if candidate.exists():
            sizes[candidate.name] = candidate.stat().st_size
    return sizes


def disk_used(target: SpanStore, stats: StoreStats | None = None) -> int | None:
    """SQLite: the real size of the database file and its write-ahead log (not the -shm index,
    a few KB to 1 MB of shared memory that goes when the last connection closes). MongoDB: the
    collection's storageSize."""
    path = sqlite_path(target)
    if path is not None:
        return sum(size for name, size in sqlite_files(path).items() if not name.endswith("-shm"))
    stats = stats or target.stats()
    return stats.size_bytes


def location(target: SpanStore, stats: StoreStats | None = None) -> str:
    path = sqlite_path(target)
    if path is not None:
        return f"SQLite {path}"
    database = (stats.extra.get("database") if stats else None) or getattr(
        getattr(target, "db", None), "name", None)
    return f"MongoDB database {database}" if database else target.name


# -- retention -----------------------------------------------------------------------------------
def parse_moment(text: str, now: datetime | None = None) -> datetime:
    """ISO-8601, a span back from now (``15m``, ``24h``, ``7d``) or ``now``; QueryError if not."""
    now = now or datetime.now(timezone.utc)
    if text.strip().lower() == "now":
        return now
    return parse_when(text, now)


def count_spans(target: SpanStore, query: SpanQuery) -> int:
    """How many spans match, from the chart aggregation (an index scan on SQLite)."""
    return sum(row.requests for row in target.aggregate(query, bucket="day"))


def reclaim_sqlite(path: Path, busy_timeout_ms: int = 5000) -> str:
    """Give the pages freed by a prune back to the file system; returns what was done.

    A file in incremental auto-vacuum mode releases its free pages (all of them: Python's
    ``execute("PRAGMA incremental_vacuum")`` runs a single step, which frees one page, so the
    pragma goes through ``executescript``). A file made without it (auto_vacuum NONE) is
    VACUUMed once, which also switches it to incremental mode. The full-text index is merged
    first (deleting rows only adds tombstones to an FTS5 index: about 9 MB were left of the
    index of 100,000 deleted spans). Then the write-ahead log is checkpointed and truncated, so
    both files are really smaller afterwards.
    """
    try:
        conn = sqlite3.connect(str(path), timeout=busy_timeout_ms / 1000, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"sqlite: {exc}") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (FTS_TABLE,)).fetchone():
            conn.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('optimize')")
        mode = conn.execute("PRAGMA auto_vacuum").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        if mode == INCREMENTAL:
            conn.executescript("PRAGMA incremental_vacuum;")
            done = f"incremental vacuum ({free} free pages released)"
        elif free:
            conn.execute(f"PRAGMA auto_vacuum = {INCREMENTAL}")
            conn.execute("VACUUM")
            done = "full VACUUM (once: the file now uses incremental auto-vacuum)"
        else:
            done = "nothing to release"
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return done
    except sqlite3.Error as exc:
        raise StoreError(f"sqlite: {exc}") from exc
    finally:
        conn.close()


# -- progress ------------------------------------------------------------------------------------
class Progress:
    """A one-line progress bar (or a counter when the total is unknown), redrawn at most every
    ``every`` seconds with a carriage return; ``finish`` prints the final count and a newline."""

    def __init__(self, write: Callable[[str], None], total: int | None = None, *,
                 unit: str = "spans", every: float = 0.2, width: int = 30) -> None:
        self.write = write
        self.total = total
        self.unit = unit
        self.every = every
        self.width = width
        self.count = 0
        self._shown = 0.0
        self._open = False  # a line without its newline is on screen

    def line(self) -> str:
        if not self.total:
            return f"{self.count:,} {self.unit}"
        fraction = min(1.0, self.count / self.total)
        filled = int(fraction * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        return f"[{bar}] {fraction:4.0%}  {self.count:,}/{self.total:,} {self.unit}"

    def advance(self, step: int = 1) -> None:
        self.count += step
        now = time.monotonic()
        if now - self._shown >= self.every:
            self._shown = now
            self.write("\r" + self.line())
            self._open = True

    def interrupt(self) -> None:
        """End the bar's line, so a message can be printed under it."""
        if self._open:
            self.write("\n")
            self._open = False

    def finish(self) -> None:
        self.write("\r" + self.line() + "\n")
        self._open = False


def counted(spans: Iterable[Span], progress: Progress | None) -> Iterator[Span]:
    for span in spans:
        yield span
        if progress is not None:
            progress.advance()


# -- import --------------------------------------------------------------------------------------
@dataclass
class ImportResult:
    spans: int = 0  # valid span lines read
    new: int = 0
    present: int = 0  # span ids the store already had (or that appeared earlier in the file)
    bad: int = 0


def parse_line(raw: bytes | str) -> Span:
    """One JSONL line as a span; ValueError says what is wrong with it."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        doc = json.loads(text)
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"not a span document (a JSON {type(doc).__name__})")
    try:
        return Span.from_document(doc)
    except KeyError as exc:
        raise ValueError(f"not a span document (no {exc.args[0]})") from None
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a valid span: {exc}") from None


def import_lines(target: SpanStore, lines: Iterable[bytes | str], *, batch_size: int = 1000,
                 on_bad: Callable[[int, str], None] | None = None,
                 on_batch: Callable[[ImportResult], None] | None = None) -> ImportResult:
    """Write the spans of JSONL lines in batches (idempotent: known span ids are skipped).

    Blank lines are ignored; a bad line is reported to ``on_bad(line number, reason)`` and
    skipped. StoreError from the store stops the import (what was written stays written)."""
    result = ImportResult()
    batch: list[Span] = []

    def flush() -> None:
        if batch:
            new = target.write_batch(batch)
            result.new += new
            result.present += len(batch) - new
            batch.clear()
            if on_batch is not None:
                on_batch(result)

    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            span = parse_line(raw)
        except ValueError as exc:
            result.bad += 1
            if on_bad is not None:
                on_bad(number, str(exc))
            continue
        result.spans += 1
        batch.append(span)
        if len(batch) >= batch_size:
            flush()
    flush()
    return result


# -- check ---------------------------------------------------------------------------------------
OK, WARNING, ERROR = "ok", "warning", "error"


@dataclass(frozen=True)
class Finding:
    level: str  # ok | warning | error
    subject: str
    message: str


def resolve_hosts(hosts: Iterable[str], timeout: float = 2.0) -> dict[str, str | None]:
    """host -> None when it resolves, else why not. Lookups run in parallel daemon threads, so
    a slow resolver costs at most ``timeout`` seconds and never holds up the exit."""
    results: dict[str, str | None] = {}
    threads = []

    def lookup(host: str) -> None:
        try:
            socket.getaddrinfo(host, None)
            results[host] = None
        except OSError as exc:
            results[host] = str(exc) or type(exc).__name__

    for host in dict.fromkeys(hosts):
        thread = threading.Thread(target=lookup, args=(host,), daemon=True, name=f"resolve-{host}")
        thread.start()
        threads.append((host, thread))
    deadline = time.monotonic() + timeout
    answers: dict[str, str | None] = {}
    for host, thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
        answers[host] = results[host] if host in results else f"no answer within {timeout:g}s"
    return answers


def check_upstreams(config: Config, timeout: float = 2.0) -> list[Finding]:
    hosts = {name: urlsplit(url).hostname or "" for name, url in config.upstreams.items()}
    answers = resolve_hosts(hosts.values(), timeout)
    findings = []
    for name, host in sorted(hosts.items()):
        problem = answers.get(host)
        if problem is None:
            findings.append(Finding(OK, f"upstream {name}", f"{host} resolves"))
        else:
            findings.append(Finding(WARNING, f"upstream {name}",
                                    f"{host} does not resolve from here ({problem}): calls routed "
                                    f"to {name} will fail until it does"))
    return findings


def check_data_dir(config: Config) -> Finding:
    data_dir = config.data_dir
    probe = data_dir if data_dir.exists() else next(
        (parent for parent in data_dir.parents if parent.exists()), data_dir)
    if not os.access(probe, os.W_OK):
        needed = "the SQLite store, " if not config.mongo_uri else ""
        return Finding(ERROR, "data directory", f"{data_dir} is not writable (it holds {needed}"
                                                f"the secret key and the proxy's CA)")
    return Finding(OK, "data directory", f"{data_dir} is writable")


def check_store(open_target: Callable[[], SpanStore]) -> Finding:
    try:
        target = open_target()
    except (StoreError, OSError) as exc:
        return Finding(ERROR, "store", f"cannot be opened: {exc}")
    try:
        target.ping()
        stats = target.stats()
    except StoreError as exc:
        return Finding(ERROR, "store", f"{target.name} is not reachable: {exc}")
    return Finding(OK, "store", f"{location(target, stats)} answers ({stats.spans:,} spans)")


def check_ca(config: Config) -> Finding:
    path = config.data_dir / CA_CERT
    if not path.exists():
        return Finding(WARNING, "proxy CA", f"{path} not found: the proxy creates it on its first "
                                            f"start (HTTPS_PROXY mode clients must trust it)")
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return Finding(ERROR, "proxy CA", f"{path} cannot be read: {exc}")
    if "-----BEGIN CERTIFICATE-----" not in text:
        return Finding(ERROR, "proxy CA", f"{path} holds no PEM certificate: move it away and "
                                          f"restart the proxy to make a new CA")
    return Finding(OK, "proxy CA", f"{path} present")
