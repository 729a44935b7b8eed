"""The storage contract, run against every backend: SQLite, mongomock and a real MongoDB-wire
server (SecantusDB). A backend is correct when this whole module passes for it."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from llmflow_core.spans import SpanStatus
from llmflow_core.store import BadCursor, SpanQuery
from tests.support.factories import T0, make_span


def test_write_then_read_back_the_same_span(store):
    span = make_span(temperature=0.2, custom={"team": "a"})
    assert store.write_batch([span]) == 1
    got = store.get_span(span.span_id)
    assert got == span
    assert got.start_time.tzinfo is not None


def test_writes_are_idempotent_by_span_id(store):
    spans = [make_span(start=T0 + timedelta(seconds=i)) for i in range(3)]
    assert store.write_batch(spans) == 3
    assert store.write_batch(spans[1:] + [make_span()]) == 1
    assert store.stats().spans == 4


def test_empty_batch_and_missing_span(store):
    assert store.write_batch([]) == 0
    assert store.get_span("0123456789abcdef") is None
    assert store.get_trace("0" * 31 + "1") == []


def test_trace_returns_all_its_spans_oldest_first(store):
    root = make_span(start=T0, duration_ms=1000)
    child_b = make_span(start=T0 + timedelta(milliseconds=600), trace_id=root.trace_id, parent=root.span_id)
    child_a = make_span(start=T0 + timedelta(milliseconds=100), trace_id=root.trace_id, parent=root.span_id)
    store.write_batch([child_b, root, child_a, make_span()])
    assert [s.span_id for s in store.get_trace(root.trace_id)] == [root.span_id, child_a.span_id, child_b.span_id]


def test_list_is_newest_first_with_cursor_paging(store):
    spans = [make_span(start=T0 + timedelta(seconds=i)) for i in range(7)]
    # two spans in the same millisecond: the cursor must still not skip or repeat one
    twin = make_span(start=spans[3].start_time)
    store.write_batch(spans + [twin])
    seen = []
    cursor = None
    pages = 0
    while True:
        page = store.list_spans(SpanQuery(limit=3, cursor=cursor))
        seen.extend(page.spans)
        pages += 1
        cursor = page.next
        if cursor is None:
            break
    assert pages == 3
    assert len(seen) == 8 and len({s.span_id for s in seen}) == 8
    starts = [s.start_time for s in seen]
    assert starts == sorted(starts, reverse=True)


def test_filters(store):
    store.write_batch([
        make_span(start=T0, model="gpt-4o", provider="openai", prompt_tokens=100, completion_tokens=50, cost=0.01),
        make_span(start=T0 + timedelta(minutes=1), model="claude-3-5-haiku", provider="anthropic", status="error"),
        make_span(start=T0 + timedelta(minutes=2), model="gpt-4o", provider="openai", status="cancelled",
                  prompt_tokens=None, completion_tokens=None, cost=None),
        make_span(start=T0 + timedelta(hours=2), model="llama3", provider="ollama", service="batch"),
    ])

    def ids(**filters):
        return [s.attributes["model"] for s in store.list_spans(SpanQuery(**filters)).spans]

    assert ids(model="gpt-4o") == ["gpt-4o", "gpt-4o"]
    assert ids(provider="anthropic") == ["claude-3-5-haiku"]
    assert ids(status=SpanStatus.ERROR) == ["claude-3-5-haiku"]
    assert ids(status="cancelled") == ["gpt-4o"]
    assert ids(since=T0 + timedelta(minutes=1), until=T0 + timedelta(hours=1)) == ["gpt-4o", "claude-3-5-haiku"]
    assert ids(min_tokens=100) == ["gpt-4o"]
    assert ids(max_tokens=20) == ["llama3", "claude-3-5-haiku"]
    assert ids(min_cost=0.005) == ["gpt-4o"]
    assert ids(service="batch") == ["llama3"]


def test_iter_spans_streams_everything_matching(store):
    store.write_batch([make_span(start=T0 + timedelta(seconds=i), model="m1" if i % 2 else "m2") for i in range(25)])
    got = list(store.iter_spans(SpanQuery(model="m1", limit=5)))
    assert len(got) == 12
    assert got[0].start_time > got[-1].start_time


def test_aggregate_by_hour_and_by_model(store):
    store.write_batch([
        make_span(start=T0, prompt_tokens=10, completion_tokens=1, cost=0.5, duration_ms=100),
        make_span(start=T0 + timedelta(minutes=30), prompt_tokens=20, completion_tokens=2, cost=0.25,
                  duration_ms=300, status="error"),
        make_span(start=T0 + timedelta(hours=1, minutes=5), model="gpt-4o", prompt_tokens=5,
                  completion_tokens=5, cost=None, duration_ms=50),
    ])
    rows = store.aggregate(SpanQuery(), bucket="hour")
    assert [(r.start, r.requests, r.errors, r.prompt_tokens, r.completion_tokens) for r in rows] == [
        (T0, 2, 1, 30, 3), (T0 + timedelta(hours=1), 1, 0, 5, 5)]
    assert rows[0].cost == pytest.approx(0.75)
    assert rows[0].avg_duration == pytest.approx(200)
    assert rows[1].cost == 0
    by_model = store.aggregate(SpanQuery(), bucket="day", group_by="model")
    assert {(r.group, r.requests) for r in by_model} == {("gpt-4o-mini", 2), ("gpt-4o", 1)}
    with pytest.raises(ValueError):
        store.aggregate(SpanQuery(), group_by="prompt")


def test_prune_deletes_only_older_spans(store):
    store.write_batch([make_span(start=T0 - timedelta(days=d)) for d in (0, 10, 40, 41)])
    assert store.prune(T0 - timedelta(days=30)) == 2
    stats = store.stats()
    assert stats.spans == 2
    assert stats.oldest == T0 - timedelta(days=10)
    assert stats.newest == T0


def test_bad_cursor_is_a_clear_error(store):
    with pytest.raises(BadCursor):
        store.list_spans(SpanQuery(cursor="not-a-cursor"))


def test_ping(store):
    store.ping()


def test_concurrent_writers_lose_and_duplicate_nothing(store):
    spans = [make_span(start=T0 + timedelta(milliseconds=i)) for i in range(200)]
    errors = []

    def write(chunk):
        try:
            for i in range(0, len(chunk), 20):
                store.write_batch(chunk[i:i + 20])
        except Exception as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    # two writers, overlapping halves: every span written at least once, some twice
    threads = [threading.Thread(target=write, args=(spans[:120],)),
               threading.Thread(target=write, args=(spans[80:],))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert store.stats().spans == 200


def test_attribute_filters(store):
    store.write_batch([
        make_span(prompt="a", user_id="u1", feature="chat", custom={"team": "core"}),
        make_span(prompt="b", user_id="u2", session_id="s9", custom={"team": "growth"}),
        make_span(prompt="c"),
    ])

    def prompts(**attributes):
        spans = store.list_spans(SpanQuery(attributes=attributes)).spans
        return sorted(s.request["messages"][0]["content"] for s in spans)

    assert prompts(user_id="u1") == ["a"]
    assert prompts(session_id="s9") == ["b"]
    assert prompts(feature="chat") == ["a"]
    assert prompts(**{"custom.team": "growth"}) == ["b"]
    assert prompts(user_id="nobody") == []
    with pytest.raises(ValueError):
        SpanQuery(attributes={"x') OR 1=1 --": "y"})


def test_full_text_search_in_prompts_answers_and_errors(store):
    store.write_batch([
        make_span(prompt="Tell me about Quantum computing", answer="Qubits are neat"),
        make_span(prompt="Write a haiku", answer="An old silent pond"),
        make_span(prompt="[{\"weird\": 1}]", status="error"),
    ])

    def found(text):
        return sorted(s.request["messages"][0]["content"] for s in store.list_spans(SpanQuery(text=text)).spans)

    assert found("quantum") == ["Tell me about Quantum computing"]
    assert found("silent pond") == ["Write a haiku"]  # in the answer, as a phrase
    assert found("qubits") == ["Tell me about Quantum computing"]
    assert found("boom") == ['[{"weird": 1}]']  # the error message
    assert found('" OR *') == []  # query syntax is not interpreted
    assert found("pond silent") == []


def test_search_index_follows_prune(store):
    store.write_batch([make_span(start=T0 - timedelta(days=40), prompt="ancient scroll"),
                       make_span(start=T0, prompt="modern scroll")])
    store.prune(T0 - timedelta(days=30))
    assert [s.request["messages"][0]["content"] for s in store.list_spans(SpanQuery(text="scroll")).spans] == [
        "modern scroll"]


def test_histogram_percentiles_and_ttft(store):
    from llmflow_core.store.base import percentile

    spans = [make_span(start=T0 + timedelta(seconds=i), duration_ms=float(d), ttft_ms=float(d) / 4)
             for i, d in enumerate([40] * 50 + [120] * 45 + [2500] * 5)]
    spans.append(make_span(start=T0 + timedelta(hours=1), duration_ms=10.0))  # no ttft
    store.write_batch(spans)
    rows = store.histogram(SpanQuery(until=T0 + timedelta(hours=1)), bucket="hour")
    counts = {r.bin: r.count for r in rows}
    assert sum(counts.values()) == 100 and {r.start for r in rows} == {T0}
    assert 30 <= percentile(counts, 0.5) <= 50
    assert 2000 <= percentile(counts, 0.99) <= 3000
    ttft = store.histogram(SpanQuery(), field="ttft")
    assert sum(r.count for r in ttft) == 100  # the span without a TTFT is not counted
    agg = store.aggregate(SpanQuery(until=T0 + timedelta(hours=1)))
    assert agg[0].avg_ttft == pytest.approx((40 * 50 + 120 * 45 + 2500 * 5) / 100 / 4)
    assert percentile({}, 0.5) is None


def test_group_by_user_and_distinct_values(store):
    store.write_batch([make_span(user_id="u1", cost=1.0), make_span(user_id="u1", cost=2.0),
                       make_span(user_id="u2", cost=0.5, model="gpt-4o"), make_span(cost=0.25)])
    by_user = {r.group: r.cost for r in store.aggregate(SpanQuery(), bucket="day", group_by="user_id")}
    assert by_user == {"u1": 3.0, "u2": 0.5, None: 0.25}
    assert store.distinct("model") == ["gpt-4o", "gpt-4o-mini"]
    assert store.distinct("user_id", SpanQuery(model="gpt-4o")) == ["u2"]
    with pytest.raises(ValueError):
        store.distinct("doc")


def test_prune_payloads_keeps_counts_and_costs(store):
    old = make_span(start=T0 - timedelta(days=20), prompt="secret old prompt", answer="old answer")
    new = make_span(start=T0, prompt="fresh prompt")
    store.write_batch([old, new])
    assert store.prune_payloads(T0 - timedelta(days=7)) == 1
    assert store.prune_payloads(T0 - timedelta(days=7)) == 0  # once only
    got = store.get_span(old.span_id)
    assert "messages" not in got.request and "output" not in got.response
    assert got.attributes["payload_pruned"] is True
    assert got.attributes["total_tokens"] == old.attributes["total_tokens"]
    assert got.attributes["estimated_cost"] == old.attributes["estimated_cost"]
    assert got.request["method"] == "POST"
    assert store.get_span(new.span_id) == new
    assert store.list_spans(SpanQuery(text="secret")).spans == []  # gone from search too
    assert sum(r.requests for r in store.aggregate(SpanQuery(), bucket="day")) == 2


def test_overview_matches_its_parts(store):
    from llmflow_core.store.base import SpanStore

    spans = [make_span(start=T0 + timedelta(minutes=7 * i), duration_ms=30.0 + 97 * (i % 13),
                       ttft_ms=(15.0 + i) if i % 3 else None, status="error" if i % 9 == 0 else "success",
                       model=["a", "b", "c"][i % 3], user_id=f"u{i % 4}" if i % 5 else None,
                       feature=["x", "y"][i % 2], cost=0.001 * i, prompt_tokens=i, completion_tokens=2 * i)
             for i in range(60)]
    store.write_batch(spans)
    query = SpanQuery(since=T0, until=T0 + timedelta(days=1), counted_only=True)
    fast = store.overview(query, bucket="hour")
    reference = SpanStore.overview(store, query, bucket="hour")  # the composition of the parts
    assert [(r.start, r.requests, r.errors, r.prompt_tokens, r.completion_tokens) for r in fast.series] == [
        (r.start, r.requests, r.errors, r.prompt_tokens, r.completion_tokens) for r in reference.series]
    for got, want in zip(fast.series, reference.series):
        assert got.cost == pytest.approx(want.cost) and got.avg_duration == pytest.approx(want.avg_duration)
        assert (got.avg_ttft is None) == (want.avg_ttft is None)
        if got.avg_ttft is not None:
            assert got.avg_ttft == pytest.approx(want.avg_ttft)
    assert fast.latency == reference.latency and fast.ttft == reference.ttft
    for name in ("model", "user_id", "feature"):
        assert [(g.name, g.requests, g.tokens) for g in fast.groups[name]] == [
            (g.name, g.requests, g.tokens) for g in reference.groups[name]]
    assert sum(r.requests for r in fast.series) == 60


def test_sqlite_search_of_a_common_term_probes_down_the_time_index(sqlite_store, monkeypatch):
    from llmflow_core.store import sqlite

    monkeypatch.setattr(sqlite, "FTS_SET_LIMIT", 3)  # make "common" cheap to reach
    sqlite_store.write_batch([make_span(start=T0 + timedelta(seconds=i), prompt=f"common word {i}") for i in range(12)]
                             + [make_span(start=T0 + timedelta(seconds=100), prompt="rare thing")])
    first = sqlite_store.list_spans(SpanQuery(text="common", limit=5))
    second = sqlite_store.list_spans(SpanQuery(text="common", limit=5, cursor=first.next))
    third = sqlite_store.list_spans(SpanQuery(text="common", limit=5, cursor=second.next))
    got = [s.request["messages"][0]["content"] for s in first.spans + second.spans + third.spans]
    assert got == [f"common word {i}" for i in range(11, -1, -1)] and third.next is None
    assert [s.request["messages"][0]["content"] for s in sqlite_store.list_spans(SpanQuery(text="rare")).spans] == [
        "rare thing"]


@pytest.mark.parametrize("window, bucket, filters", [
    ((timedelta(minutes=23), timedelta(hours=26, minutes=41)), "hour", {}),  # partial hours at both ends
    ((timedelta(hours=-3), timedelta(days=3)), "day", {"model": "b"}),
    ((timedelta(minutes=59, seconds=59), timedelta(hours=9)), "hour", {"status": "error"}),
    ((timedelta(hours=2), None), "hour", {"provider": "openai"}),
    ((timedelta(minutes=5), timedelta(hours=12)), "hour", {"attributes": {"user_id": "u1"}}),
])
def test_overview_matches_its_parts_at_any_window(store, window, bucket, filters):
    """Windows that do not start or end on the hour, open-ended ones and filters: however a
    store answers (SQLite: hourly rollups and the spans at the edges), the sums are its parts'."""
    from llmflow_core.store.base import SpanStore

    spans = [make_span(start=T0 + timedelta(minutes=11 * i, seconds=i % 7), duration_ms=20.0 + 131 * (i % 11),
                       ttft_ms=(9.0 + i) if i % 4 else None, status=["success", "error", "cancelled"][i % 3],
                       model=["a", "b"][i % 2], provider=["openai", "anthropic"][i % 5 == 0],
                       user_id=f"u{i % 3}" if i % 4 else None, feature=["x", None][i % 2 and i % 3 == 0],
                       cost=0.001 * i if i % 6 else None, prompt_tokens=i, completion_tokens=3 * i)
             for i in range(200)]
    spans[10] = spans[10].with_changes(kind="workflow")  # never counted
    spans[11] = spans[11].with_changes(attributes={**spans[11].attributes, "duplicate_of": spans[12].span_id})
    store.write_batch(spans)
    since, until = window
    query = SpanQuery(since=T0 + since, until=T0 + until if until is not None else None,
                      counted_only=True, **filters)
    fast = store.overview(query, bucket=bucket)
    reference = SpanStore.overview(store, query, bucket=bucket)
    assert [(r.start, r.requests, r.errors, r.prompt_tokens, r.completion_tokens) for r in fast.series] == [
        (r.start, r.requests, r.errors, r.prompt_tokens, r.completion_tokens) for r in reference.series]
    for got, want in zip(fast.series, reference.series):
        assert got.cost == pytest.approx(want.cost) and got.avg_duration == pytest.approx(want.avg_duration)
        assert got.avg_ttft == pytest.approx(want.avg_ttft)
    assert fast.latency == reference.latency and fast.ttft == reference.ttft
    for name in ("model", "user_id", "feature"):
        assert [(g.name, g.requests, g.tokens, pytest.approx(g.cost)) for g in fast.groups[name]] == [
            (g.name, g.requests, g.tokens, g.cost) for g in reference.groups[name]]
    assert sum(r.requests for r in fast.series) > 0
