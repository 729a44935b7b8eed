"""The embedded store: one SQLite file in WAL mode, shared by the proxy and the dashboard.

Each span is a row: the columns that lists, filters and charts need, plus the whole document
as JSON. Times are INTEGER epoch milliseconds (SQLite has no datetime type; integers sort and
range exactly like MongoDB's dates). One connection per thread; writers wait up to
``busy_timeout`` for each other, readers never block writers (WAL).
"""

from __future__ import annotations

import bisect
import json
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

from llmflow_core.spans import Span
from llmflow_core.text import search_text
from llmflow_core.store.base import (
    BUCKET_SECONDS, GROUP_FIELDS, HISTOGRAM_BOUNDS, PAYLOAD_FIELDS, Bucket, BucketRow, HistogramField,
    OVERVIEW_GROUPS, GroupTotal, HistogramRow, Overview, Page, SpanQuery, SpanStore, StoreError,
    StoreStats, decode_cursor, encode_cursor,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    span_id TEXT NOT NULL UNIQUE,
    trace_id TEXT NOT NULL,
    parent_span_id TEXT,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    duration REAL NOT NULL,
    status TEXT NOT NULL,
    service TEXT,
    provider TEXT,
    model TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    total_tokens INTEGER,
    cost REAL,
    -- copied out of the attributes at insert: filters and charts never parse the JSON
    user_id TEXT,
    session_id TEXT,
    feature TEXT,
    ttft REAL,
    kind TEXT,
    duplicate_of TEXT,
    dbin INTEGER,  -- latency histogram bin of duration / ttft (HISTOGRAM_BOUNDS), set at insert
    tbin INTEGER,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS spans_start ON spans (start_ms DESC, span_id DESC);
CREATE INDEX IF NOT EXISTS spans_trace ON spans (trace_id, start_ms);
CREATE INDEX IF NOT EXISTS spans_model ON spans (model, start_ms DESC, span_id DESC);
CREATE INDEX IF NOT EXISTS spans_provider ON spans (provider, start_ms DESC, span_id DESC);
CREATE INDEX IF NOT EXISTS spans_status ON spans (status, start_ms DESC, span_id DESC);
-- Covering index for charts: a time range is aggregated from the index alone, never the rows.
CREATE INDEX IF NOT EXISTS spans_stats ON spans (start_ms, kind, duplicate_of, status, duration,
    ttft, dbin, tbin, prompt_tokens, completion_tokens, cost, model, provider, user_id, feature);
CREATE INDEX IF NOT EXISTS spans_user ON spans (user_id, start_ms DESC) WHERE user_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS spans_session ON spans (session_id, start_ms DESC) WHERE session_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS spans_feature ON spans (feature, start_ms DESC) WHERE feature IS NOT NULL;
-- Full-text search over prompts and answers (its own copy of that text, capped per span).
CREATE VIRTUAL TABLE IF NOT EXISTS spans_fts USING fts5(text, tokenize = 'unicode61');
CREATE TRIGGER IF NOT EXISTS spans_fts_delete AFTER DELETE ON spans BEGIN
    DELETE FROM spans_fts WHERE rowid = old.rowid;
END;
"""
COLUMNS = ("span_id", "trace_id", "parent_span_id", "start_ms", "end_ms", "duration", "status",
           "service", "provider", "model", "prompt_tokens", "completion_tokens", "total_tokens",
           "cost", "user_id", "session_id", "feature", "ttft", "kind", "duplicate_of", "dbin", "tbin",
           "doc")
SCHEMA_VERSION = 3
INSERT = f"INSERT OR IGNORE INTO spans ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
INSERT_TEXT = "INSERT INTO spans_fts (rowid, text) VALUES (?, ?)"
GROUP_COLUMNS = {name: name for name in GROUP_FIELDS}
INDEXED_ATTRIBUTES = ("user_id", "session_id", "feature")


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def from_ms(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, tz=timezone.utc)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def bin_of(value: float | None) -> int | None:
    """The histogram bin of a latency: the index of the first bound above it."""
    return None if value is None else bisect.bisect_right(HISTOGRAM_BOUNDS, value)


def _text(value: Any) -> str | None:
    return str(value) if value is not None else None


def row_for(span: Span) -> tuple[Any, ...]:
    attrs = span.attributes
    return (
        span.span_id, span.trace_id, span.parent_span_id, to_ms(span.start_time),
        to_ms(span.end_time), span.duration, span.status.value, span.service,
        attrs.get("provider"), attrs.get("model"), _int(attrs.get("prompt_tokens")),
        _int(attrs.get("completion_tokens")), _int(attrs.get("total_tokens")),
        _number(attrs.get("estimated_cost")), _text(attrs.get("user_id")),
        _text(attrs.get("session_id")), _text(attrs.get("feature")), _number(attrs.get("ttft_ms")),
        span.kind, _text(attrs.get("duplicate_of")), bin_of(span.duration),
        bin_of(_number(attrs.get("ttft_ms"))),
        json.dumps(span.to_json(), ensure_ascii=False, default=str),
    )


def fts_phrase(text: str) -> str:
    """The user's words as one FTS5 phrase (quotes escaped: no query syntax gets through)."""
    return '"' + " ".join(text.split()).replace('"', '""') + '"'


# Full-text strategy for list pages: a term with fewer matches than this is looked up as a set;
# a more common one is probed row by row down the time index, which finds a page early.
FTS_SET_LIMIT = 2000


def where(query: SpanQuery, *, with_cursor: bool = True, probe_text: bool = False) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []

    def add(sql: str, *values: Any) -> None:
        clauses.append(sql)
        args.extend(values)

    if query.since is not None:
        add("start_ms >= ?", to_ms(query.since))
    if query.until is not None:
        add("start_ms < ?", to_ms(query.until))
    for column in ("model", "provider", "service", "trace_id"):
        value = getattr(query, column)
        if value is not None:
            add(f"{column} = ?", value)
    if query.status is not None:
        add("status = ?", query.status.value)
    if query.min_tokens is not None:
        add("total_tokens >= ?", query.min_tokens)
    if query.max_tokens is not None:
        add("total_tokens <= ?", query.max_tokens)
    if query.min_cost is not None:
        add("cost >= ?", query.min_cost)
    for key, value in query.attributes.items():
        if key in INDEXED_ATTRIBUTES:
            add(f"{key} = ?", value)
        else:
            path = "$.attributes." + ".".join(f'"{part}"' for part in key.split(".", 1))
            add("json_extract(doc, ?) = ?", path, value)
    if query.text and probe_text:
        add("EXISTS (SELECT 1 FROM spans_fts WHERE spans_fts MATCH ? AND spans_fts.rowid = spans.rowid)",
            fts_phrase(query.text))
    elif query.text:
        add("rowid IN (SELECT rowid FROM spans_fts WHERE spans_fts MATCH ?)", fts_phrase(query.text))
    if query.counted_only:
        add("kind IN ('llm', 'http') AND duplicate_of IS NULL")
    if with_cursor and query.cursor:
        millis, span_id = decode_cursor(query.cursor)
        add("(start_ms < ? OR (start_ms = ? AND span_id < ?))", millis, millis, span_id)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


class SQLiteStore(SpanStore):
    name = "sqlite"

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 5000,
                 cache_kib: int = 32768, mmap_bytes: int = 256 * 1024 * 1024) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.busy_timeout_ms = busy_timeout_ms
        # The dashboard reads a lot (big cache, mmap); the proxy only appends (small).
        self.cache_kib = cache_kib
        self.mmap_bytes = mmap_bytes
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        with self._guard():
            conn = self._conn()
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            has_table = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'spans'").fetchone()
            if has_table and version != SCHEMA_VERSION:
                raise StoreError(f"{self.path} was made by another LLMFlow version (schema "
                                 f"{version}, this one uses {SCHEMA_VERSION}): export it with the "
                                 f"old version, or move it away to start afresh")
            conn.executescript(SCHEMA)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # -- connections -------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000,
                                   isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            # Before journal_mode: switching to WAL writes the file header, after which
            # auto_vacuum can no longer change (only takes effect on a new file).
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(f"PRAGMA cache_size = -{int(self.cache_kib)}")
            conn.execute(f"PRAGMA mmap_size = {int(self.mmap_bytes)}")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def _guard(self):
        return _Guard()

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._local = threading.local()

    # -- contract ----------------------------------------------------------------------------
    def write_batch(self, spans: Sequence[Span]) -> int:
        if not spans:
            return 0
        rows = [(row_for(span), search_text(span.request, span.response, span.error))
                for span in spans]
        with self._guard():
            conn = self._conn()
            new = 0
            conn.execute("BEGIN IMMEDIATE")
            try:
                for row, text in rows:
                    cursor = conn.execute(INSERT, row)
                    if cursor.rowcount == 1:  # not a duplicate: index its text
                        new += 1
                        if text:
                            conn.execute(INSERT_TEXT, (cursor.lastrowid, text))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return new

    def _spans(self, sql: str, args: Sequence[Any]) -> list[Span]:
        with self._guard():
            rows = self._conn().execute(sql, args).fetchall()
        return [Span.from_document(json.loads(row[0])) for row in rows]

    def get_span(self, span_id: str) -> Span | None:
        found = self._spans("SELECT doc FROM spans WHERE span_id = ?", (span_id,))
        return found[0] if found else None

    def get_trace(self, trace_id: str) -> list[Span]:
        return self._spans("SELECT doc FROM spans WHERE trace_id = ? ORDER BY start_ms, span_id",
                           (trace_id,))

    def list_spans(self, query: SpanQuery) -> Page:
        probe = False
        if query.text:
            with self._guard():
                matches = self._conn().execute(
                    "SELECT COUNT(*) FROM (SELECT rowid FROM spans_fts WHERE spans_fts MATCH ? LIMIT ?)",
                    (fts_phrase(query.text), FTS_SET_LIMIT)).fetchone()[0]
            probe = matches >= FTS_SET_LIMIT
        clause, args = where(query, probe_text=probe)
        spans = self._spans(f"SELECT doc FROM spans{clause} ORDER BY start_ms DESC, span_id DESC "
                            f"LIMIT ?", [*args, query.limit + 1])
        more = len(spans) > query.limit
        spans = spans[: query.limit]
        last = spans[-1] if more else None
        return Page(spans, encode_cursor(last.start_time, last.span_id) if last else None)

    def iter_spans(self, query: SpanQuery) -> Iterator[Span]:
        clause, args = where(query, with_cursor=False)
        with self._guard():
            # A connection of its own: the export may take a while and must not hold the
            # thread's shared connection in a half-read statement.
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000)
        try:
            cursor = conn.execute(f"SELECT doc FROM spans{clause} ORDER BY start_ms DESC, "
                                  f"span_id DESC", args)
            for (doc,) in cursor:
                yield Span.from_document(json.loads(doc))
        finally:
            conn.close()

    def aggregate(self, query: SpanQuery, *, bucket: Bucket = "hour",
                  group_by: str | None = None) -> list[BucketRow]:
        if group_by is not None and group_by not in GROUP_FIELDS:
            raise ValueError(f"cannot group by {group_by!r}")
        size = BUCKET_SECONDS[bucket] * 1000
        clause, args = where(query, with_cursor=False)
        group = GROUP_COLUMNS[group_by] if group_by else "NULL"
        sql = (f"SELECT (start_ms / {size}) * {size} AS b, {group} AS g, COUNT(*), "
               f"SUM(status = 'error'), COALESCE(SUM(prompt_tokens), 0), "
               f"COALESCE(SUM(completion_tokens), 0), COALESCE(SUM(cost), 0), AVG(duration), "
               f"AVG(ttft) FROM spans{clause} GROUP BY b, g ORDER BY b, g")
        with self._guard():
            rows = self._conn().execute(sql, args).fetchall()
        return [BucketRow(from_ms(b), g, n, int(e or 0), int(p), int(c), float(cost), avg, ttft)
                for b, g, n, e, p, c, cost, avg, ttft in rows]

    def histogram(self, query: SpanQuery, *, bucket: Bucket = "hour",
                  field: HistogramField = "duration") -> list[HistogramRow]:
        column = {"duration": "dbin", "ttft": "tbin"}[field]  # bins computed at insert
        size = BUCKET_SECONDS[bucket] * 1000
        clause, args = where(query, with_cursor=False)
        clause = (clause + " AND " if clause else " WHERE ") + f"{column} IS NOT NULL"
        sql = (f"SELECT (start_ms / {size}) * {size} AS b, {column} AS h, COUNT(*) "
               f"FROM spans{clause} GROUP BY b, h ORDER BY b, h")
        with self._guard():
            rows = self._conn().execute(sql, args).fetchall()
        return [HistogramRow(from_ms(b), h, n) for b, h, n in rows]

    def overview(self, query: SpanQuery, *, bucket: Bucket = "hour") -> Overview:
        """Two passes over the covering index instead of six queries: one grouped by time bucket
        and latency/TTFT bins, one grouped by model, user and feature; the rest is arithmetic."""
        size = BUCKET_SECONDS[bucket] * 1000
        clause, args = where(query, with_cursor=False)
        with self._guard():
            conn = self._conn()
            by_time = conn.execute(
                f"SELECT (start_ms / {size}) * {size}, dbin, tbin, COUNT(*), "
                f"SUM(status = 'error'), COALESCE(SUM(prompt_tokens), 0), "
                f"COALESCE(SUM(completion_tokens), 0), COALESCE(SUM(cost), 0), SUM(duration), "
                f"SUM(ttft), COUNT(ttft) FROM spans{clause} GROUP BY 1, 2, 3", args).fetchall()
            by_group = conn.execute(
                f"SELECT {', '.join(OVERVIEW_GROUPS)}, COUNT(*), COALESCE(SUM(cost), 0), "
                f"COALESCE(SUM(prompt_tokens), 0) + COALESCE(SUM(completion_tokens), 0) "
                f"FROM spans{clause} GROUP BY {', '.join(OVERVIEW_GROUPS)}", args).fetchall()
        sums: dict[int, list[float]] = {}
        latency: dict[datetime, dict[int, int]] = {}
        ttft: dict[datetime, dict[int, int]] = {}
        for b, dbin, tbin, n, errors, prompt, completion, cost, dur, ttft_sum, ttft_n in by_time:
            entry = sums.setdefault(b, [0, 0, 0, 0, 0.0, 0.0, 0.0, 0])
            for index, value in enumerate((n, errors or 0, prompt, completion, cost, dur or 0.0,
                                           ttft_sum or 0.0, ttft_n)):
                entry[index] += value
            start = from_ms(b)
            bins = latency.setdefault(start, {})
            bins[dbin] = bins.get(dbin, 0) + n
            if tbin is not None:
                tbins = ttft.setdefault(start, {})
                tbins[tbin] = tbins.get(tbin, 0) + n
        series = [BucketRow(from_ms(b), None, int(n), int(e), int(p), int(c), float(cost),
                            dur / n if n else None, ts / tn if tn else None)
                  for b, (n, e, p, c, cost, dur, ts, tn) in sorted(sums.items())]
        groups: dict[str, list[GroupTotal]] = {}
        for position, field_name in enumerate(OVERVIEW_GROUPS):
            totals: dict[str | None, list[float]] = {}
            for row in by_group:
                entry = totals.setdefault(row[position], [0, 0.0, 0])
                entry[0] += row[-3]
                entry[1] += row[-2]
                entry[2] += row[-1]
            groups[field_name] = sorted((GroupTotal(name, int(n), cost, int(tokens))
                                         for name, (n, cost, tokens) in totals.items()),
                                        key=lambda g: (g.name is None, g.name or ""))
        return Overview(series, latency, ttft, groups)

    def distinct(self, field: str, query: SpanQuery | None = None, limit: int = 200) -> list[str]:
        if field not in GROUP_FIELDS:
            raise ValueError(f"no distinct values for {field!r}")
        clause, args = where(query or SpanQuery(), with_cursor=False)
        if not clause:
            # Skip-scan: one index seek per distinct value instead of reading every row, so
            # the filter suggestions stay instant at a million spans.
            sql = (f"WITH RECURSIVE d(v) AS (SELECT MIN({field}) FROM spans WHERE {field} IS NOT NULL UNION ALL "
                   f"SELECT (SELECT MIN({field}) FROM spans WHERE {field} > d.v) FROM d "
                   f"WHERE d.v IS NOT NULL) SELECT v FROM d WHERE v IS NOT NULL LIMIT ?")
            args = [limit]
        else:
            clause += f" AND {field} IS NOT NULL"
            sql = f"SELECT DISTINCT {field} FROM spans{clause} ORDER BY {field} LIMIT ?"
            args = [*args, limit]
        with self._guard():
            rows = self._conn().execute(sql, args).fetchall()
        return [row[0] for row in rows]

    def prune(self, before: datetime) -> int:
        with self._guard():
            conn = self._conn()
            deleted = conn.execute("DELETE FROM spans WHERE start_ms < ?", (to_ms(before),)).rowcount
            if deleted:
                _reclaim(conn)
            return deleted

    def prune_payloads(self, before: datetime) -> int:
        paths = ", ".join(f"'$.{a}.{b}'" for a, b in PAYLOAD_FIELDS)
        with self._guard():
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                ids = [row[0] for row in conn.execute(
                    "SELECT rowid FROM spans WHERE start_ms < ? AND "
                    "json_extract(doc, '$.attributes.payload_pruned') IS NULL", (to_ms(before),))]
                for start in range(0, len(ids), 500):
                    chunk = ids[start:start + 500]
                    marks = ",".join("?" * len(chunk))
                    conn.execute(f"UPDATE spans SET doc = json_set(json_remove(doc, {paths}), "
                                 f"'$.attributes.payload_pruned', json('true')) WHERE rowid IN ({marks})",
                                 chunk)
                    conn.execute(f"DELETE FROM spans_fts WHERE rowid IN ({marks})", chunk)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            if ids:
                _reclaim(conn)
            return len(ids)

    def stats(self) -> StoreStats:
        with self._guard():
            conn = self._conn()
            count, oldest, newest = conn.execute(
                "SELECT COUNT(*), MIN(start_ms), MAX(start_ms) FROM spans").fetchone()
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        return StoreStats(count, from_ms(oldest) if oldest is not None else None,
                          from_ms(newest) if newest is not None else None, pages * page_size,
                          {"path": self.path})

    def ping(self) -> None:
        with self._guard():
            self._conn().execute("SELECT 1").fetchone()


def _reclaim(conn: sqlite3.Connection) -> None:
    """Give the pages a prune freed back to the file system. Deleted rows only leave tombstones
    in the FTS5 index until its segments are merged ('optimize'). ``executescript`` runs the
    vacuum pragma to the end: ``execute("PRAGMA incremental_vacuum")`` takes a single step, which
    frees one page. The truncating checkpoint then shrinks the database file (in WAL mode it
    only shrinks at a checkpoint) and empties the WAL, which the prune itself had filled."""
    conn.execute("INSERT INTO spans_fts (spans_fts) VALUES ('optimize')")
    conn.executescript("PRAGMA incremental_vacuum;")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


class _Guard:
    """Turns sqlite3 errors into StoreError, so callers handle one exception type."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is not None and isinstance(exc, sqlite3.Error):
            raise StoreError(f"sqlite: {exc}") from exc
        return False
