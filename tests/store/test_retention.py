"""Retention on every store, with a clock the test controls (``apply_retention(..., now=)``):
RETENTION_DAYS deletes old spans, RETENTION_PAYLOAD_DAYS drops prompts and responses first while
counts and costs stay for the charts, MongoDB's TTL index follows RETENTION_DAYS (changed in
place, never duplicated), and a prune really gives SQLite's disk space back."""

from __future__ import annotations

import os
import sqlite3
import uuid
from datetime import timedelta
from itertools import islice
from pathlib import Path

import mongomock
import pytest
from pymongo import MongoClient

from llmflow_core import config as llmflow_config
from llmflow_core.demo import demo_spans
from llmflow_core.store import SpanQuery, apply_retention, open_store
from llmflow_core.store.mongo import TTL_INDEX, MongoStore
from llmflow_core.store.sqlite import SQLiteStore
from tests.conftest import mongo_uri
from tests.support.factories import T0, make_span

DAY = 86400


def config(retention_days: int = 30, payload_days: int = 0, **env: str) -> llmflow_config.Config:
    """The configuration as the proxy reads it, from environment variables."""
    return llmflow_config.load({"RETENTION_DAYS": str(retention_days),
                                "RETENTION_PAYLOAD_DAYS": str(payload_days),
                                "LLMFLOW_DATA_DIR": "/tmp/llmflow-retention-test", **env})


def ids(store) -> set[str]:
    return {span.span_id for span in store.iter_spans(SpanQuery())}


def totals(store, query: SpanQuery | None = None) -> tuple[int, int, int, float]:
    rows = store.aggregate(query or SpanQuery(), bucket="day")
    return (sum(r.requests for r in rows), sum(r.prompt_tokens for r in rows),
            sum(r.completion_tokens for r in rows), round(sum(r.cost for r in rows), 9))


# -- RETENTION_DAYS and RETENTION_PAYLOAD_DAYS, on SQLite, mongomock and the MongoDB-wire server --
def test_retention_days_deletes_what_is_older_than_the_window(store):
    ancient = make_span(start=T0 - timedelta(days=400))
    old = make_span(start=T0 - timedelta(days=30, seconds=1))
    edge = make_span(start=T0 - timedelta(days=30))  # exactly 30 days: kept (start < cutoff goes)
    recent = make_span(start=T0 - timedelta(days=1))
    now = make_span(start=T0)
    store.write_batch([ancient, old, edge, recent, now])

    assert apply_retention(store, config(30), now=T0) == (2, 0)
    assert ids(store) == {edge.span_id, recent.span_id, now.span_id}
    assert apply_retention(store, config(30), now=T0) == (0, 0)  # nothing left to do

    # the clock moves on a day: the edge span and nothing else goes
    assert apply_retention(store, config(30), now=T0 + timedelta(days=1)) == (1, 0)
    assert ids(store) == {recent.span_id, now.span_id}
    stats = store.stats()
    assert (stats.spans, stats.oldest) == (2, recent.start_time)


def test_retention_zero_keeps_everything(store):
    spans = [make_span(start=T0 - timedelta(days=days)) for days in (0, 45, 3650)]
    store.write_batch(spans)
    assert apply_retention(store, config(0, 0), now=T0 + timedelta(days=10000)) == (0, 0)
    assert ids(store) == {span.span_id for span in spans}


def test_payloads_go_first_while_counts_and_costs_stay(store):
    gone = make_span(start=T0 - timedelta(days=40), prompt="ancient prompt")
    stripped = make_span(start=T0 - timedelta(days=10), prompt="confidential plan",
                         answer="the confidential answer", prompt_tokens=100, completion_tokens=40,
                         cost=0.25, user_id="u1")
    whole = make_span(start=T0 - timedelta(days=1), prompt="yesterday's question")
    store.write_batch([gone, stripped, whole])
    charts_before = totals(store, SpanQuery(since=T0 - timedelta(days=30)))

    assert apply_retention(store, config(30, 7), now=T0) == (1, 1)
    assert ids(store) == {stripped.span_id, whole.span_id}
    got = store.get_span(stripped.span_id)
    assert "messages" not in got.request and "output" not in got.response
    assert got.request["method"] == "POST" and got.response["status_code"] == 200
    assert got.attributes["payload_pruned"] is True
    for key in ("prompt_tokens", "completion_tokens", "total_tokens", "estimated_cost", "model",
                "user_id"):
        assert got.attributes[key] == stripped.attributes[key]
    assert (got.start_time, got.duration, got.status) == (
        stripped.start_time, stripped.duration, stripped.status)
    assert store.get_span(whole.span_id) == whole  # inside both windows: untouched
    assert totals(store) == charts_before  # the charts do not change
    assert store.list_spans(SpanQuery(text="confidential")).spans == []
    assert [s.span_id for s in store.list_spans(SpanQuery(text="yesterday")).spans] == [whole.span_id]

    # a week later yesterday's span loses its payload too; the stripped one is not counted again
    assert apply_retention(store, config(30, 7), now=T0 + timedelta(days=7)) == (0, 1)
    assert "messages" not in store.get_span(whole.span_id).request
    assert totals(store) == charts_before


def test_payload_retention_alone_deletes_no_span(store):
    spans = [make_span(start=T0 - timedelta(days=days)) for days in (2, 20, 200)]
    store.write_batch(spans)
    assert apply_retention(store, config(0, 7), now=T0) == (0, 2)
    assert ids(store) == {span.span_id for span in spans}


# -- MongoDB's TTL index ---------------------------------------------------------------------
def ttl_indexes(store: MongoStore) -> dict[str, dict]:
    return {name: info for name, info in store.spans.index_information().items()
            if "expireAfterSeconds" in info}


@pytest.fixture
def mongo_database(mongo_server):
    name = f"ttl{uuid.uuid4().hex[:10]}"
    yield mongo_uri(mongo_server, name)
    client = MongoClient(mongo_uri(mongo_server, name))
    client.drop_database(name)
    client.close()


def test_mongo_ttl_index_follows_retention_days(mongo_database):
    """On the MongoDB-wire server: one TTL index on startTime, changed in place when
    RETENTION_DAYS changes (each new MongoStore is a proxy or dashboard restart)."""
    first = MongoStore(mongo_database, retention_days=30)
    first.ensure_indexes()
    first.write_batch([make_span(start=T0)])
    ttl = ttl_indexes(first)
    assert list(ttl) == [TTL_INDEX]
    assert ttl[TTL_INDEX]["key"] == [("startTime", 1)]
    assert ttl[TTL_INDEX]["expireAfterSeconds"] == 30 * DAY
    index_count = len(first.spans.index_information())

    for days in (7, 7, 90):
        restarted = MongoStore(mongo_database, retention_days=days)
        restarted.ensure_indexes()
        ttl = ttl_indexes(restarted)
        assert list(ttl) == [TTL_INDEX]  # updated, not duplicated
        assert ttl[TTL_INDEX]["expireAfterSeconds"] == days * DAY
        assert len(restarted.spans.index_information()) == index_count
        assert restarted.stats().spans == 1  # changing the index loses no data
        restarted.close()

    off = MongoStore(mongo_database, retention_days=0)
    off.ensure_indexes()
    assert ttl_indexes(off) == {}  # RETENTION_DAYS=0 keeps spans forever: no TTL index
    assert len(off.spans.index_information()) == index_count - 1
    off.close()

    again = MongoStore(mongo_database, retention_days=5)
    again.ensure_indexes()
    assert ttl_indexes(again)[TTL_INDEX]["expireAfterSeconds"] == 5 * DAY
    again.close()
    first.close()


def test_mongo_ttl_index_comes_from_the_configuration(mongo_database, tmp_path):
    """RETENTION_DAYS reaches the index through open_store, on the first write."""
    store = open_store(config(14, MONGO_URI=mongo_database, LLMFLOW_DATA_DIR=str(tmp_path)))
    try:
        assert store.name == "mongo"
        store.write_batch([make_span()])
        assert ttl_indexes(store)[TTL_INDEX]["expireAfterSeconds"] == 14 * DAY
    finally:
        store.close()
    assert not (tmp_path / "llmflow.sqlite3").exists()


def test_mongomock_ttl_index_is_created_and_dropped():
    client = mongomock.MongoClient(tz_aware=True)
    store = MongoStore(client=client, database="ttl", retention_days=30)
    store.ensure_indexes()
    assert ttl_indexes(store)[TTL_INDEX]["expireAfterSeconds"] == 30 * DAY
    off = MongoStore(client=client, database="ttl", retention_days=0)
    off.ensure_indexes()
    assert ttl_indexes(off) == {}


# -- SQLite gives the space back -------------------------------------------------------------
def disk_bytes(path: Path) -> int:
    """What the store takes on disk: the database file and its write-ahead log."""
    return sum(os.path.getsize(f"{path}{suffix}") for suffix in ("", "-wal")
               if os.path.exists(f"{path}{suffix}"))


def fill(store: SQLiteStore, count: int, *, end, days: float = 5) -> None:
    source = demo_spans(count, end=end, days=days, seed=11)
    while batch := list(islice(source, 1000)):
        store.write_batch(batch)


def test_sqlite_retention_prune_shrinks_the_file(tmp_path):
    """The proxy's scheduled prune (apply_retention -> SQLiteStore.prune) must leave a smaller
    file, WAL included: not only free pages inside a file of the same size."""
    path = tmp_path / "llmflow.sqlite3"
    store = SQLiteStore(path)
    try:
        fill(store, 4000, end=T0 - timedelta(days=60))
        keep = [make_span(start=T0 - timedelta(hours=h)) for h in range(5)]
        store.write_batch(keep)
        before = disk_bytes(path)
        main_before = os.path.getsize(path)
        assert main_before > 5_000_000  # a real amount of data

        assert apply_retention(store, config(30), now=T0) == (4000, 0)

        after = disk_bytes(path)
        assert os.path.getsize(path) < main_before / 5, (main_before, os.path.getsize(path))
        assert after < before / 5, (before, after)
        assert ids(store) == {span.span_id for span in keep}  # and the rest is intact
        assert store.get_span(keep[0].span_id) == keep[0]
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        store.close()


def test_sqlite_payload_prune_shrinks_the_file(tmp_path):
    path = tmp_path / "llmflow.sqlite3"
    store = SQLiteStore(path)
    try:
        fill(store, 3000, end=T0 - timedelta(days=10))
        before = disk_bytes(path)
        charts = totals(store)
        assert apply_retention(store, config(0, 7), now=T0) == (0, 3000)
        assert disk_bytes(path) < before * 0.8, (before, disk_bytes(path))
        assert totals(store) == charts
    finally:
        store.close()
