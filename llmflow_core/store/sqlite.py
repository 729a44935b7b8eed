"""The embedded store: one SQLite file in WAL mode, shared by the proxy and the dashboard.

Each span is a row: the columns that lists, filters and charts need, plus the whole document
as JSON. Times are INTEGER epoch milliseconds (SQLite has no datetime type; integers sort and
range exactly like MongoDB's dates). One connection per thread; writers wait up to
``busy_timeout`` for each other, readers never block writers (WAL).

Analytics read hourly rollups: a day is ~140,000 spans at a million a week, too many to scan
in the dashboard's 500 ms, so the counted spans are also summed per hour (see ROLLUPS).
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import logging
import re
import sqlite3
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

from llmflow_core.spans import Span, SpanStatus
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
# 4: hourly rollups (ROLLUPS). A version-3 file is upgraded in place when opened; any other
# version is refused (export with the LLMFlow that made it, import here).
SCHEMA_VERSION = 4
UPGRADABLE_FROM = 3
# How long opening a file waits for another process that is upgrading it: the upgrade reads
# every span (20-30 s per million), far longer than a writer's busy_timeout.
UPGRADE_WAIT_MS = 15 * 60 * 1000
INSERT = f"INSERT OR IGNORE INTO spans ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
INSERT_TEXT = "INSERT INTO spans_fts (rowid, text) VALUES (?, ?)"
GROUP_COLUMNS = {name: name for name in GROUP_FIELDS}
INDEXED_ATTRIBUTES = ("user_id", "session_id", "feature")
# SpanQuery.counted_only over a spans row (``{r}``: "", "new." or "old."): totals count each
# LLM/HTTP call once (no workflow/task spans, no second record of a call seen twice).
COUNTED = "{r}kind IN ('llm', 'http') AND {r}duplicate_of IS NULL"

log = logging.getLogger("llmflow.store")


# -- hourly rollups ----------------------------------------------------------------------------
# The analytics page sums a window of counted spans per time bucket, latency bin and group. At a
# million spans a week, a day's window is ~140,000 spans: two GROUP BY passes over even a
# covering index take 0.5-0.6 s, a week's window 5 s. So every counted span is also added, per
# hour, into two small tables: spans_hourly (per latency bin, TTFT bin, status, model, provider
# and service: the time series, the histograms and the totals per model) and
# spans_hourly_attributes (per user or feature, status, model, provider and service: the top
# users and features). A day then reads ~13,000 + ~15,000 rows, a week ~7 times that. Whole
# hours inside a query's window come from them, the partial hours at both edges from the spans
# (see rollup_hours); a query filtering on something they do not hold reads the spans alone.
#
# Triggers on spans keep them exact: every write path (write_batch, prune, prune_payloads, an
# import, an UPDATE of a counted column) passes through them in the writer's own transaction, so
# a rollup never lags behind or drifts from the spans: there is no job to run, nothing to
# rebuild, and no window of time where the charts miss recent spans. The price is paid by the
# writer: six small statements per counted span, ~35 us of CPU on top of ~170 (about 20% fewer
# spans per second in the store write benchmark); a prune takes ~10% longer. User and feature
# get rows of their own rather than one row per (user, feature) pair: one more row per span to
# write, but a second table 3 times smaller to read.
#
# A key column cannot hold NULL (NULL = NULL is not true: the trigger's UPDATE would never find
# its row): a missing model, user, bin... is stored as NONE. The key columns are declared without
# a type, hence without affinity, so the integer NONE never equals a text value, not even '-1',
# and bins (integers >= 0) never reach it.
HOUR_MS = 3_600_000
NONE = -1
ROLLUP_FILTERS = ("status", "model", "provider", "service")  # SpanQuery filters in rollup keys
# SpanQuery fields a rollup read handles itself (the window) or that mean nothing to a sum.
_ROLLUP_IGNORES = ("since", "until", "counted_only", "limit", "cursor")


@dataclass(frozen=True)
class Rollup:
    """How a counted spans row feeds one rollup row. Expressions are over the row ``{r}``;
    the first value is the row count ``n``: a row whose count falls to 0 is deleted, so the
    rollup holds exactly the groups a GROUP BY over the spans would find."""

    table: str
    keys: tuple[tuple[str, str], ...]  # (column, expression)
    values: tuple[tuple[str, str, str], ...]  # (column, type, expression)

    def create(self) -> str:
        keys = ", ".join(f"{name} NOT NULL" for name, _ in self.keys)  # no type: see NONE
        values = ", ".join(f"{name} {kind} NOT NULL" for name, kind, _ in self.values)
        return (f"CREATE TABLE IF NOT EXISTS {self.table} ({keys}, {values}, PRIMARY KEY "
                f"({', '.join(name for name, _ in self.keys)})) WITHOUT ROWID")

    def add(self, row: str) -> tuple[str, str]:
        """SQL adding the span ``row`` (``new.``) to its rollup row: the row is created empty
        if it is new, then the span is added. Not an UPSERT (INSERT ... ON CONFLICT DO UPDATE):
        inside a trigger each upsert costs the writer ~60 us, as much as storing the span
        itself, where these two statements cost ~10 us together. SQLite applies the firing
        statement's conflict policy to a trigger's statements, so spans must never be written
        with INSERT OR REPLACE: the OR IGNORE here would become a REPLACE that empties the row
        (and the FTS row of a replaced span would be orphaned too)."""
        columns = [name for name, _ in self.keys] + [name for name, _, _ in self.values]
        values = [e.format(r=row) for _, e in self.keys] + ["0"] * len(self.values)
        insert = (f"INSERT OR IGNORE INTO {self.table} ({', '.join(columns)}) "
                  f"VALUES ({', '.join(values)})")
        return insert, self._change(row, "+")

    def remove(self, row: str) -> tuple[str, str]:
        """SQL taking the span ``row`` (``old.``) out of its rollup row, then dropping the row
        if that was its last span."""
        return (self._change(row, "-"), f"DELETE FROM {self.table} WHERE {self._match(row)} AND n = 0")

    def _match(self, row: str) -> str:
        return " AND ".join(f"{name} = {e.format(r=row)}" for name, e in self.keys)

    def _change(self, row: str, sign: str) -> str:
        sums = ", ".join(f"{name} = {name} {sign} ({e.format(r=row)})" for name, _, e in self.values)
        return f"UPDATE {self.table} SET {sums} WHERE {self._match(row)}"

    def backfill(self) -> str:
        """SQL filling the rollup from the spans already stored (the upgrade to version 4)."""
        columns = [name for name, _ in self.keys] + [name for name, _, _ in self.values]
        keys = [e.format(r="") for _, e in self.keys]
        sums = [f"SUM({e.format(r='')})" for _, _, e in self.values]
        return (f"INSERT INTO {self.table} ({', '.join(columns)}) SELECT {', '.join(keys + sums)} "
                f"FROM spans WHERE {COUNTED.format(r='')} "
                f"GROUP BY {', '.join(str(i + 1) for i in range(len(keys)))}")

    def columns(self) -> set[str]:
        """The spans columns this rollup reads (an UPDATE of any of them must re-add the row)."""
        exprs = [e for _, e in self.keys] + [e for _, _, e in self.values]
        return {name for e in exprs for name in re.findall(r"\{r\}(\w+)", e)}


def _or_none(column: str) -> str:
    return f"COALESCE({{r}}{column}, {NONE})"


# Key order is storage order (WITHOUT ROWID): hour first for the window's range, then what the
# overview groups by, so SQLite aggregates each hour in key order without sorting, then the
# filters. Sorting every rollup row of a week's window would double the time of the reads.
_HOUR_KEY = ("hour", f"({{r}}start_ms / {HOUR_MS}) * {HOUR_MS}")
_FILTER_KEYS = tuple((column, _or_none(column)) for column in ROLLUP_FILTERS)
SERIES_ROLLUP = Rollup(
    "spans_hourly",
    keys=(_HOUR_KEY, ("dbin", _or_none("dbin")), ("tbin", _or_none("tbin")), *_FILTER_KEYS),
    values=(("n", "INTEGER", "1"),
            ("prompt_tokens", "INTEGER", "COALESCE({r}prompt_tokens, 0)"),
            ("completion_tokens", "INTEGER", "COALESCE({r}completion_tokens, 0)"),
            ("cost", "REAL", "COALESCE({r}cost, 0.0)"),
            ("duration", "REAL", "{r}duration"),
            ("ttft", "REAL", "COALESCE({r}ttft, 0.0)"),
            ("ttft_n", "INTEGER", "{r}ttft IS NOT NULL")))
# The overview's groups other than model (a key of spans_hourly): one row per span and group.
ATTRIBUTE_GROUPS = tuple(name for name in OVERVIEW_GROUPS if name != "model")
ROLLUPS = (SERIES_ROLLUP, *(Rollup(
    "spans_hourly_attributes",
    keys=(_HOUR_KEY, ("field", f"'{name}'"), ("name", _or_none(name)), *_FILTER_KEYS),
    values=(("n", "INTEGER", "1"), ("cost", "REAL", "COALESCE({r}cost, 0.0)"),
            ("tokens", "INTEGER", "COALESCE({r}prompt_tokens, 0) + COALESCE({r}completion_tokens, 0)")))
    for name in ATTRIBUTE_GROUPS))


def _rollup_ddl() -> tuple[str, ...]:
    """The rollup tables and the triggers that keep them, one statement each."""
    tables = {rollup.table: rollup.create() for rollup in ROLLUPS}

    def trigger(name: str, event: str, row: str, statements: list[str]) -> str:
        body = "".join(f"    {statement};\n" for statement in statements)
        return (f"CREATE TRIGGER IF NOT EXISTS {name} AFTER {event} ON spans "
                f"WHEN {COUNTED.format(r=row)}\nBEGIN\n{body}END")

    add = [statement for rollup in ROLLUPS for statement in rollup.add("new.")]
    remove = [statement for rollup in ROLLUPS for statement in rollup.remove("old.")]
    # Only an UPDATE of a column a rollup or COUNTED reads moves a span between rollup rows
    # (prune_payloads rewrites doc alone: no trigger runs). The two UPDATE triggers commute.
    watched = sorted(set().union(*(rollup.columns() for rollup in ROLLUPS),
                                 re.findall(r"\{r\}(\w+)", COUNTED)))
    update = f"UPDATE OF {', '.join(watched)}"
    return (*tables.values(),
            trigger("spans_rollup_insert", "INSERT", "new.", add),
            trigger("spans_rollup_delete", "DELETE", "old.", remove),
            trigger("spans_rollup_update_old", update, "old.", remove),
            trigger("spans_rollup_update_new", update, "new.", add))


ROLLUP_DDL = _rollup_ddl()


def rollup_hours(query: SpanQuery, bucket: Bucket) -> tuple[int, int | None] | None:
    """The whole hours [first, last) of the query's window that the rollups answer (last None:
    up to the newest span), or None when they cannot answer the query at all."""
    if bucket not in ("hour", "day") or not query.counted_only or query.since is None:
        return None
    for field in dataclasses.fields(SpanQuery):  # a filter the rollups do not hold: spans only
        if field.name in ROLLUP_FILTERS or field.name in _ROLLUP_IGNORES:
            continue
        default = field.default_factory() if field.default is dataclasses.MISSING else field.default
        if getattr(query, field.name) != default:
            return None
    since = to_ms(query.since)
    if since < 0:  # SQLite's division truncates towards 0: hour keys are floors only from 1970
        return None
    first = -(-since // HOUR_MS) * HOUR_MS
    last = None if query.until is None else to_ms(query.until) // HOUR_MS * HOUR_MS
    if last is not None and last <= first:
        return None
    return first, last


def rollup_where(query: SpanQuery, first: int, last: int | None) -> tuple[str, list[Any]]:
    clauses, args = ["hour >= ?"], [first]
    if last is not None:
        clauses.append("hour < ?")
        args.append(last)
    for column in ROLLUP_FILTERS:
        value = getattr(query, column)
        if value is not None:
            clauses.append(f"{column} = ?")
            args.append(value.value if isinstance(value, SpanStatus) else value)
    return " WHERE " + " AND ".join(clauses), args


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
        add(COUNTED.format(r=""))
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
            if not has_table:
                # One transaction: another process opening the file meanwhile finds either
                # nothing or every table, trigger and the version (IF NOT EXISTS: both may run it).
                conn.executescript(f"BEGIN IMMEDIATE;\n{SCHEMA}\n{';'.join(ROLLUP_DDL)};\n"
                                   f"PRAGMA user_version = {SCHEMA_VERSION};\nCOMMIT;")
            elif version == UPGRADABLE_FROM:
                self._upgrade(conn)
            elif version != SCHEMA_VERSION:
                raise StoreError(f"{self.path} was made by another LLMFlow version (schema "
                                 f"{version}, this one uses {SCHEMA_VERSION}): export it with the "
                                 f"old version, or move it away to start afresh")

    def _upgrade(self, conn: sqlite3.Connection) -> None:
        """Schema 3 -> 4 in place: create the rollups and their triggers and fill them from the
        spans already stored, in one transaction (all or nothing; writers wait meanwhile and
        their spans then reach the rollups through the triggers). Several processes may open
        the old file at once: the first to take the write lock upgrades, the others wait for it
        and then find the new version."""
        conn.execute(f"PRAGMA busy_timeout = {UPGRADE_WAIT_MS}")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if conn.execute("PRAGMA user_version").fetchone()[0] == UPGRADABLE_FROM:
                    started = time.perf_counter()
                    log.info("upgrading %s from schema %d to %d (hourly analytics rollups)...",
                             self.path, UPGRADABLE_FROM, SCHEMA_VERSION)
                    for statement in (*ROLLUP_DDL, *(rollup.backfill() for rollup in ROLLUPS)):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    log.info("upgraded %s in %.1f s", self.path, time.perf_counter() - started)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")

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
        """The whole hours of the window from the rollups, the partial hours at its edges from
        the spans (see rollup_hours); a query the rollups cannot answer from the spans alone.
        Every part is read in one transaction, so all see the same spans."""
        size = BUCKET_SECONDS[bucket] * 1000
        hours = rollup_hours(query, bucket)
        sums = _OverviewSums()
        with self._guard():
            conn = self._conn()
            conn.execute("BEGIN")
            try:
                if hours is None:
                    self._overview_spans(conn, query, size, sums)
                else:
                    first, last = hours
                    assert query.since is not None  # rollup_hours needs a start
                    if to_ms(query.since) < first:
                        self._overview_spans(conn, replace(query, until=from_ms(first)), size, sums)
                    self._overview_rollups(conn, query, first, last, size, sums)
                    if last is not None and query.until is not None and to_ms(query.until) > last:
                        self._overview_spans(conn, replace(query, since=from_ms(last)), size, sums)
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")  # read only: nothing to write
        return sums.overview()

    @staticmethod
    def _overview_spans(conn: sqlite3.Connection, query: SpanQuery, size: int,
                        sums: _OverviewSums) -> None:
        """Two passes over the covering index: one grouped by time bucket and latency/TTFT
        bins, one grouped by model, user and feature."""
        clause, args = where(query, with_cursor=False)
        for row in conn.execute(
                f"SELECT (start_ms / {size}) * {size}, dbin, tbin, COUNT(*), "
                f"SUM(status = 'error'), COALESCE(SUM(prompt_tokens), 0), "
                f"COALESCE(SUM(completion_tokens), 0), COALESCE(SUM(cost), 0), SUM(duration), "
                f"SUM(ttft), COUNT(ttft) FROM spans{clause} GROUP BY 1, 2, 3", args):
            sums.add_time(*row)
        for *names, n, cost, tokens in conn.execute(
                f"SELECT {', '.join(OVERVIEW_GROUPS)}, COUNT(*), COALESCE(SUM(cost), 0), "
                f"COALESCE(SUM(prompt_tokens), 0) + COALESCE(SUM(completion_tokens), 0) "
                f"FROM spans{clause} GROUP BY {', '.join(OVERVIEW_GROUPS)}", args):
            for field_name, name in zip(OVERVIEW_GROUPS, names):
                sums.add_group(field_name, name, n, cost, tokens)

    @staticmethod
    def _overview_rollups(conn: sqlite3.Connection, query: SpanQuery, first: int,
                          last: int | None, size: int, sums: _OverviewSums) -> None:
        """The same sums for the whole hours [first, last), from the rollups (NONE back to
        NULL); totals per model come from spans_hourly, where model is a key."""
        clause, args = rollup_where(query, first, last)
        # Inner queries group in key order (hour first: no sort); the outer ones merge the
        # hours into buckets and groups from far fewer rows.
        for row in conn.execute(
                f"SELECT (hour / {size}) * {size}, NULLIF(dbin, {NONE}), NULLIF(tbin, {NONE}), "
                f"SUM(n), SUM(errors), SUM(prompt), SUM(completion), SUM(cost), SUM(duration), "
                f"SUM(ttft), SUM(ttft_n) FROM (SELECT hour, dbin, tbin, SUM(n) AS n, "
                f"SUM(n * (status = 'error')) AS errors, SUM(prompt_tokens) AS prompt, "
                f"SUM(completion_tokens) AS completion, SUM(cost) AS cost, "
                f"SUM(duration) AS duration, SUM(ttft) AS ttft, SUM(ttft_n) AS ttft_n "
                f"FROM spans_hourly{clause} GROUP BY hour, dbin, tbin) GROUP BY 1, 2, 3", args):
            sums.add_time(*row)
        for row in conn.execute(
                f"SELECT 'model', NULLIF(model, {NONE}), SUM(n), SUM(cost), "
                f"SUM(prompt_tokens + completion_tokens) FROM spans_hourly{clause} GROUP BY model "
                f"UNION ALL SELECT field, NULLIF(name, {NONE}), SUM(n), SUM(cost), SUM(tokens) "
                f"FROM (SELECT field, name, SUM(n) AS n, SUM(cost) AS cost, SUM(tokens) AS tokens "
                f"FROM spans_hourly_attributes{clause} GROUP BY hour, field, name) "
                f"GROUP BY field, name", [*args, *args]):
            sums.add_group(*row)

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


class _OverviewSums:
    """Adds up the parts of an overview (spans and rollups, any number of rows per bucket, bin
    or group) into one Overview."""

    def __init__(self) -> None:
        # per bucket: requests, errors, prompt, completion, cost, duration sum, TTFT sum, TTFTs
        self.series: dict[int, list[float]] = {}
        self.latency: dict[datetime, dict[int, int]] = {}
        self.ttft: dict[datetime, dict[int, int]] = {}
        self.groups: dict[str, dict[str | None, list[float]]] = {name: {} for name in OVERVIEW_GROUPS}

    def add_time(self, bucket: int, dbin: int | None, tbin: int | None, n: int, errors: int | None,
                 prompt: int, completion: int, cost: float, duration: float | None,
                 ttft_sum: float | None, ttft_n: int) -> None:
        entry = self.series.setdefault(bucket, [0, 0, 0, 0, 0.0, 0.0, 0.0, 0])
        for index, value in enumerate((n, errors or 0, prompt, completion, cost, duration or 0.0,
                                       ttft_sum or 0.0, ttft_n)):
            entry[index] += value
        start = from_ms(bucket)
        bins = self.latency.setdefault(start, {})
        bins[dbin] = bins.get(dbin, 0) + n
        if tbin is not None:
            tbins = self.ttft.setdefault(start, {})
            tbins[tbin] = tbins.get(tbin, 0) + n

    def add_group(self, field_name: str, name: str | None, n: int, cost: float, tokens: int) -> None:
        entry = self.groups[field_name].setdefault(name, [0, 0.0, 0])
        entry[0] += n
        entry[1] += cost
        entry[2] += tokens

    def overview(self) -> Overview:
        series = [BucketRow(from_ms(b), None, int(n), int(e), int(p), int(c), float(cost),
                            dur / n if n else None, ts / tn if tn else None)
                  for b, (n, e, p, c, cost, dur, ts, tn) in sorted(self.series.items())]
        groups = {field_name: sorted((GroupTotal(name, int(n), float(cost), int(tokens))
                                      for name, (n, cost, tokens) in totals.items()),
                                     key=lambda g: (g.name is None, g.name or ""))
                  for field_name, totals in self.groups.items()}
        return Overview(series, self.latency, self.ttft, groups)


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
