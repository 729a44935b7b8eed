"""SQLite's hourly rollups (sqlite.ROLLUPS): the analytics overview read through them equals the
overview read from the spans alone, after every write path (inserts, re-sent batches, prune,
prune_payloads, UPDATEs of counted columns), at any window and filter; the triggers keep exactly
what a rebuild from the spans gives; a schema-3 file is upgraded in place, once."""

from __future__ import annotations

import random
import sqlite3
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from llmflow_core.spans import Span
from llmflow_core.store import SpanQuery, StoreError, sqlite
from llmflow_core.store.base import OVERVIEW_GROUPS, Overview, SpanStore
from llmflow_core.store.sqlite import SQLiteStore
from llmflow_core.text import search_text
from tests.support.factories import T0, make_span

HOURS = 60  # the spans cover this many hours after T0
HOUR = timedelta(hours=1)


def random_spans(rng: random.Random, count: int) -> list[Span]:
    """Spans with every shape the rollups must handle: on and around hour boundaries, NULL
    models/users/costs/tokens/TTFTs, values spelled like the rollups' NULL stand-in ("-1"),
    workflow spans and second records of a call (not counted), errors and cancellations."""
    spans = []
    for _ in range(count):
        hour = rng.randrange(HOURS)
        offset = rng.choice([rng.randrange(3_600_000), 0, 3_599_999, rng.randrange(1000)])
        start = T0 + timedelta(hours=hour, milliseconds=offset)
        prompt = rng.choice([None, rng.randrange(5000)])
        attributes = {"user_id": rng.choice([None, "u1", "u2", "u3", "-1"]),
                      "feature": rng.choice([None, "chat", "search", "-1"]),
                      "ttft_ms": rng.choice([None, rng.uniform(1, 3000)])}
        if rng.random() < 0.1:
            attributes["duplicate_of"] = "0123456789abcdef"
        span = make_span(start=start, duration_ms=rng.choice([0.4, rng.uniform(1, 90_000), 500.0]),
                         status=rng.choice(["success"] * 6 + ["error", "cancelled"]),
                         model=rng.choice(["gpt-4o", "claude", "-1", None]),
                         provider=rng.choice(["openai", "anthropic", None]),
                         service=rng.choice(["llmflow-proxy", "batch"]),
                         prompt_tokens=prompt, completion_tokens=rng.choice([None, rng.randrange(900)]),
                         cost=rng.choice([None, 0.0, rng.uniform(0, 0.2)]),
                         prompt=rng.choice(["hello", "quantum stuff", "haiku please"]), **attributes)
        if rng.random() < 0.1:
            span = span.with_changes(kind=rng.choice(["workflow", "task"]))
        spans.append(span)
    return spans


def random_query(rng: random.Random) -> tuple[SpanQuery, str]:
    """A window anywhere over the data (hour-aligned or not, open-ended or not), a bucket, and
    filters the rollups hold, mostly, or ones they do not."""
    since = T0 + timedelta(hours=rng.randrange(-2, HOURS), milliseconds=rng.choice(
        [0, 0, rng.randrange(3_600_000), 1]))
    length = timedelta(minutes=rng.choice([30, 59, 60, 61, 150, 24 * 60, 36 * 60, 3 * 24 * 60]),
                       milliseconds=rng.choice([0, 0, rng.randrange(3_600_000)]))
    until = rng.choice([since + length, since + length, None])
    filters: dict = {}
    if rng.random() < 0.5:
        for name, values in (("model", ["gpt-4o", "claude", "-1"]), ("provider", ["openai", "anthropic"]),
                             ("status", ["success", "error", "cancelled"]),
                             ("service", ["llmflow-proxy", "batch"])):
            if rng.random() < 0.3:
                filters[name] = rng.choice(values)
    if rng.random() < 0.15:
        filters.update(rng.choice([{"attributes": {"user_id": "u1"}}, {"min_tokens": 1000},
                                   {"text": "quantum"}, {"min_cost": 0.05}]))
    query = SpanQuery(since=since, until=until, counted_only=rng.random() < 0.9, **filters)
    bucket = rng.choice(["hour", "hour", "day", "minute"] if until and until - since <= 3 * HOUR
                        else ["hour", "day"])
    return query, bucket


def from_spans(store: SQLiteStore, query: SpanQuery, bucket: str, monkeypatch) -> Overview:
    """The overview read from the spans alone (the rollups switched off)."""
    with monkeypatch.context() as patch:
        patch.setattr(sqlite, "rollup_hours", lambda query, bucket: None)
        return store.overview(query, bucket=bucket)


def assert_same(got: Overview, want: Overview) -> None:
    """Counts, tokens and bins exactly; sums of floats (cost, latency) up to their rounding,
    which depends on the order they were added in."""
    assert [(r.start, r.requests, r.errors, r.prompt_tokens, r.completion_tokens) for r in got.series] == [
        (r.start, r.requests, r.errors, r.prompt_tokens, r.completion_tokens) for r in want.series]
    for mine, theirs in zip(got.series, want.series):
        assert mine.cost == pytest.approx(theirs.cost, rel=1e-9, abs=1e-12)
        assert mine.avg_duration == pytest.approx(theirs.avg_duration, rel=1e-9)
        assert (mine.avg_ttft is None) == (theirs.avg_ttft is None)
        if mine.avg_ttft is not None:
            assert mine.avg_ttft == pytest.approx(theirs.avg_ttft, rel=1e-9)
    assert got.latency == want.latency
    assert got.ttft == want.ttft
    for name in OVERVIEW_GROUPS:
        assert [(g.name, g.requests, g.tokens) for g in got.groups[name]] == [
            (g.name, g.requests, g.tokens) for g in want.groups[name]]
        for mine, theirs in zip(got.groups[name], want.groups[name]):
            assert mine.cost == pytest.approx(theirs.cost, rel=1e-9, abs=1e-12)


def check_queries(store: SQLiteStore, rng: random.Random, monkeypatch, rounds: int = 60) -> int:
    """Random queries: rollups vs spans alone. Returns how many used the rollups."""
    used = 0
    for _ in range(rounds):
        query, bucket = random_query(rng)
        if sqlite.rollup_hours(query, bucket) is not None:
            used += 1
        assert_same(store.overview(query, bucket=bucket), from_spans(store, query, bucket, monkeypatch))
    return used


def rollup_rows(path: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(path) as db:
        return {table: db.execute(f"SELECT * FROM {table} ORDER BY {', '.join(k for k, _ in rollup.keys)}")
                .fetchall() for table, rollup in {r.table: r for r in sqlite.ROLLUPS}.items()}


def assert_same_rows(got: dict[str, list[tuple]], want: dict[str, list[tuple]]) -> None:
    assert got.keys() == want.keys()
    for table, rows in got.items():
        assert len(rows) == len(want[table]), table
        for mine, theirs in zip(rows, want[table]):
            assert [v for v in mine if not isinstance(v, float)] == [v for v in theirs if not isinstance(v, float)]
            assert [v for v in mine if isinstance(v, float)] == pytest.approx(
                [v for v in theirs if isinstance(v, float)], rel=1e-9, abs=1e-9)


def write_v3_file(path: Path, spans: list[Span]) -> None:
    """A file as LLMFlow's schema 3 made it: the same spans table and indexes, no rollups."""
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA auto_vacuum = INCREMENTAL")
        db.execute("PRAGMA journal_mode = WAL")
        db.executescript(sqlite.SCHEMA)
        for span in spans:
            rowid = db.execute(sqlite.INSERT, sqlite.row_for(span)).lastrowid
            db.execute(sqlite.INSERT_TEXT, (rowid, search_text(span.request, span.response, span.error)))
        db.execute("PRAGMA user_version = 3")
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 'spans_hourly%'").fetchone() == (0,)


# -- the rollups answer like the spans ------------------------------------------------------------
def test_rollups_equal_the_spans_through_every_write_path(sqlite_store, tmp_path, monkeypatch):
    store = sqlite_store
    rng = random.Random(20261127)
    spans = random_spans(rng, 1500)
    for index in range(0, len(spans), 200):
        store.write_batch(spans[index:index + 200])
    assert store.write_batch(spans[100:400]) == 0  # a re-sent batch adds nothing, to the rollups neither
    assert check_queries(store, rng, monkeypatch) > 20  # most random queries do use the rollups

    # the triggers keep exactly what a rebuild from the same spans (the upgrade) finds
    rebuilt = tmp_path / "rebuilt.sqlite3"
    write_v3_file(rebuilt, spans)
    SQLiteStore(rebuilt).close()
    assert_same_rows(rollup_rows(Path(store.path)), rollup_rows(rebuilt))

    # retention: a prune in the middle of an hour, then payloads (doc only: no trigger runs)
    assert store.prune(T0 + timedelta(hours=7, minutes=13, milliseconds=5)) > 0
    assert store.prune_payloads(T0 + timedelta(hours=20, minutes=40)) > 0
    check_queries(store, rng, monkeypatch, rounds=30)

    # UPDATEs of counted columns: marking duplicates (in and out of the totals), a call turned
    # into a workflow span, moved to another hour, given another model, status, cost, user...
    with sqlite3.connect(store.path) as db:
        rowids = [row[0] for row in db.execute("SELECT rowid FROM spans")]
        for rowid in rng.sample(rowids, 300):
            column, value = rng.choice([
                ("duplicate_of", rng.choice([None, "fedcba9876543210"])), ("kind", rng.choice(["llm", "workflow"])),
                ("start_ms", sqlite.to_ms(T0) + rng.randrange(HOURS * 3_600_000)),
                ("model", rng.choice([None, "gpt-4o", "new-model"])), ("status", rng.choice(["success", "error"])),
                ("cost", rng.choice([None, 0.5])), ("user_id", rng.choice([None, "u9"])),
                ("ttft", rng.choice([None, 12.5])), ("tbin", rng.choice([None, 3])), ("dbin", 7),
                ("prompt_tokens", rng.choice([None, 77])), ("duration", 1234.5)])
            db.execute(f"UPDATE spans SET {column} = ? WHERE rowid = ?", (value, rowid))
        db.execute("UPDATE spans SET service = 'moved', feature = NULL WHERE rowid % 7 = 0")
    check_queries(store, rng, monkeypatch, rounds=30)

    # and everything pruned leaves no empty rollup row behind
    store.prune(T0 + timedelta(days=30))
    assert rollup_rows(Path(store.path)) == {rollup.table: [] for rollup in sqlite.ROLLUPS}


def test_rollups_equal_the_composition_of_the_parts(sqlite_store):
    store = sqlite_store
    """Against the contract's reference (SpanStore.overview: aggregate + histogram), not only
    against this store's own spans-only path."""
    store.write_batch(random_spans(random.Random(5), 800))
    for query, bucket in [
        (SpanQuery(since=T0 + timedelta(minutes=17), until=T0 + timedelta(hours=30, seconds=5), counted_only=True), "hour"),
        (SpanQuery(since=T0 + timedelta(hours=3), until=T0 + timedelta(days=2, hours=1), counted_only=True,
                   model="gpt-4o", status="success"), "day"),
        (SpanQuery(since=T0 + timedelta(hours=1), counted_only=True, provider="openai"), "hour"),
    ]:
        assert sqlite.rollup_hours(query, bucket) is not None
        assert_same(store.overview(query, bucket=bucket), SpanStore.overview(store, query, bucket=bucket))


def test_which_queries_the_rollups_answer():
    since, until = T0 + timedelta(minutes=30), T0 + timedelta(hours=5, minutes=1)
    counted = SpanQuery(since=since, until=until, counted_only=True)
    hours = (sqlite.to_ms(T0 + HOUR), sqlite.to_ms(T0 + 5 * HOUR))
    assert sqlite.rollup_hours(counted, "hour") == hours
    assert sqlite.rollup_hours(counted, "day") == hours
    assert sqlite.rollup_hours(SpanQuery(since=since, until=until, counted_only=True, model="m",
                                         provider="p", status="error", service="s", limit=7), "hour") == hours
    assert sqlite.rollup_hours(SpanQuery(since=T0, counted_only=True), "hour") == (sqlite.to_ms(T0), None)
    for query, bucket in [
        (counted, "minute"),  # short windows: the spans are few
        (SpanQuery(since=since, until=until), "hour"),  # workflow spans and duplicates are not in them
        (SpanQuery(until=until, counted_only=True), "hour"),  # no start: the spans alone
        (SpanQuery(since=since, until=T0 + HOUR + timedelta(minutes=59), counted_only=True), "hour"),  # no whole hour
        (SpanQuery(since=since, until=until, counted_only=True, text="x"), "hour"),
        (SpanQuery(since=since, until=until, counted_only=True, attributes={"user_id": "u"}), "hour"),
        (SpanQuery(since=since, until=until, counted_only=True, min_tokens=1), "hour"),
        (SpanQuery(since=since, until=until, counted_only=True, max_tokens=1), "hour"),
        (SpanQuery(since=since, until=until, counted_only=True, min_cost=0.1), "hour"),
        (SpanQuery(since=since, until=until, counted_only=True, trace_id="0" * 32), "hour"),
        (SpanQuery(since=datetime(1969, 12, 31, 22, 30, tzinfo=T0.tzinfo), until=until, counted_only=True), "hour"),
    ]:
        assert sqlite.rollup_hours(query, bucket) is None, query


# -- schema 3 -> 4 --------------------------------------------------------------------------------
def test_a_schema_3_file_is_upgraded_in_place(tmp_path, monkeypatch):
    rng = random.Random(3)
    old, later = random_spans(rng, 1200), random_spans(rng, 300)
    path = tmp_path / "llmflow.sqlite3"
    write_v3_file(path, old)

    store = SQLiteStore(path)
    try:
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA user_version").fetchone() == (sqlite.SCHEMA_VERSION,)
        assert store.stats().spans == 1200
        assert check_queries(store, rng, monkeypatch, rounds=30) > 5
        store.write_batch(later)  # the triggers carry on from the backfill
        check_queries(store, rng, monkeypatch, rounds=30)
    finally:
        store.close()
    reference = tmp_path / "fresh.sqlite3"
    fresh = SQLiteStore(reference)
    fresh.write_batch(old + later)
    fresh.close()
    assert_same_rows(rollup_rows(path), rollup_rows(reference))
    SQLiteStore(path).close()  # opening an upgraded file again changes nothing
    assert_same_rows(rollup_rows(path), rollup_rows(reference))


def test_processes_opening_a_schema_3_file_at_once_upgrade_it_once(tmp_path):
    spans = random_spans(random.Random(9), 2000)
    path = tmp_path / "llmflow.sqlite3"
    write_v3_file(path, spans)
    reference = tmp_path / "fresh.sqlite3"
    fresh = SQLiteStore(reference)
    fresh.write_batch(spans)
    fresh.close()

    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_store() -> None:
        try:
            start.wait()
            SQLiteStore(path, busy_timeout_ms=100).close()  # short: the upgrade waits longer
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert_same_rows(rollup_rows(path), rollup_rows(reference))  # backfilled once, not 4 times


@pytest.mark.parametrize("version", [1, 2, 99])
def test_other_schema_versions_are_refused(tmp_path, version):
    path = tmp_path / "llmflow.sqlite3"
    write_v3_file(path, [make_span()])
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {version}")
    with pytest.raises(StoreError, match=f"schema {version}, this one uses {sqlite.SCHEMA_VERSION}"):
        SQLiteStore(path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (version,)  # left as it was
