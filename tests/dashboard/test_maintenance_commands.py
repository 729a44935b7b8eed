"""The maintenance commands (stats, prune, export_spans, import_spans, check) through
call_command, on SQLite and mongomock (the ``data`` fixture), and a move from SQLite to the real
MongoDB-wire server through export and import that loses nothing."""

from __future__ import annotations

import io
import json
import os
import sqlite3
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from itertools import islice
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from llmflow_core.demo import demo_spans
from llmflow_core.spans import Span, iso
from llmflow_core.store import SpanQuery
from llmflow_core.store.mongo import MongoStore
from llmflow_core.store.sqlite import SQLiteStore
from llmflow_dashboard import repository
from llmflow_dashboard.export import CSV_COLUMNS
from llmflow_dashboard.maintenance import Progress, resolve_hosts
from tests.support.factories import make_span
from tests.support.processes import free_port


def run(name: str, *args, **options) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(name, *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def ago(**delta) -> datetime:
    return datetime.now(timezone.utc) - timedelta(**delta)


def all_spans(store) -> dict[str, Span]:
    return {span.span_id: span for span in store.iter_spans(SpanQuery())}


def fill(store, count: int, *, end: datetime | None = None, days: float = 3, seed: int = 5) -> None:
    source = demo_spans(count, end=end, days=days, seed=seed)
    while batch := list(islice(source, 1000)):
        store.write_batch(batch)


def disk_bytes(path: str | Path) -> int:
    """The database file and its write-ahead log: what stats reports as disk used."""
    return sum(os.path.getsize(f"{path}{suffix}") for suffix in ("", "-wal")
               if os.path.exists(f"{path}{suffix}"))


@pytest.fixture
def spans_over_time(data):
    spans = {"month": make_span(start=ago(days=40), prompt="forty days ago"),
             "week": make_span(start=ago(days=10), prompt="ten days ago", cost=0.5),
             "hour": make_span(start=ago(hours=1), prompt="an hour ago")}
    data.write_batch(list(spans.values()))
    return spans


# -- stats ---------------------------------------------------------------------------------------
def test_stats_shows_count_oldest_newest_and_disk(data, spans_over_time):
    out, _ = run("stats")
    assert "spans      3" in out
    assert f"oldest     {iso(spans_over_time['month'].start_time)}" in out
    assert f"newest     {iso(spans_over_time['hour'].start_time)}" in out
    assert "retention  spans kept 30 days" in out
    doc = json.loads(run("stats", json=True)[0])
    assert (doc["store"], doc["spans"]) == (data.name, 3)
    assert doc["oldest"] == iso(spans_over_time["month"].start_time)
    if data.name == "sqlite":  # the real bytes on disk, WAL included
        files = doc["files"]
        assert doc["disk_bytes"] == files["spans.sqlite3"] + files.get("spans.sqlite3-wal", 0) > 0
        assert doc["disk_bytes"] >= os.path.getsize(data.path)
        assert data.path in doc["location"]
    else:  # mongomock has no collStats
        assert doc["disk_bytes"] is None and doc["files"] is None


def test_stats_of_an_empty_store(data):
    out, _ = run("stats")
    assert "spans      0" in out and "oldest     -" in out


# -- prune ---------------------------------------------------------------------------------------
def test_prune_applies_retention_now(data, spans_over_time):
    out, _ = run("prune", days=30, payload_days=7)
    assert "deleted 1 spans that started before" in out
    assert "dropped prompts and responses of 1 spans" in out
    left = all_spans(data)
    assert set(left) == {spans_over_time["week"].span_id, spans_over_time["hour"].span_id}
    week = left[spans_over_time["week"].span_id]
    assert "messages" not in week.request and week.attributes["estimated_cost"] == 0.5
    assert left[spans_over_time["hour"].span_id] == spans_over_time["hour"]
    again, _ = run("prune", days=30, payload_days=7)
    assert "deleted 0 spans" in again and "of 0 spans" in again


def test_prune_uses_the_configured_retention_by_default(data, spans_over_time, settings):
    settings.LLMFLOW = replace(settings.LLMFLOW, retention_days=5)
    out, _ = run("prune")
    assert "deleted 2 spans" in out
    assert set(all_spans(data)) == {spans_over_time["hour"].span_id}


def test_prune_dry_run_changes_nothing(data, spans_over_time):
    out, _ = run("prune", days=30, payload_days=7, dry_run=True)
    assert "would delete 1 spans" in out
    assert "would drop prompts and responses of at most 1 spans" in out
    assert "dry run: nothing changed" in out
    assert all_spans(data) == {s.span_id: s for s in spans_over_time.values()}


def test_prune_before_a_moment(data, spans_over_time):
    out, _ = run("prune", before="2d", payload_days=0)
    assert "deleted 2 spans" in out
    out, _ = run("prune", before="now", payload_days=0)
    assert "deleted 1 spans" in out
    assert data.stats().spans == 0
    with pytest.raises(CommandError, match="--before"):
        run("prune", before="yesterday-ish")


def test_prune_with_retention_off_does_nothing(data, spans_over_time):
    out, _ = run("prune", days=0, payload_days=0)
    assert out.startswith("Nothing to prune")
    assert data.stats().spans == 3


def test_prune_command_shrinks_an_sqlite_file(tmp_path):
    """Also on a file made without incremental auto-vacuum (the store set it too late for
    files created so far): the first prune VACUUMs it once, later ones are incremental."""
    path = tmp_path / "llmflow.sqlite3"
    with sqlite3.connect(path) as db:  # an existing file with auto_vacuum NONE, in WAL mode
        db.execute("PRAGMA auto_vacuum = NONE")
        db.execute("PRAGMA journal_mode = WAL")
    store = SQLiteStore(path)
    repository.use_store(store)
    try:
        fill(store, 3000, end=ago(days=60))
        store.write_batch([make_span(start=ago(hours=1))])
        before = disk_bytes(path)
        out, _ = run("prune", days=30)
        assert "deleted 3,000 spans" in out
        after = disk_bytes(path)
        assert after < before / 4, (before, after)
        assert f"{before:,} -> {after:,} bytes" in out
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental from now on
        fill(store, 2000, end=ago(days=50), seed=6)
        before = disk_bytes(path)
        out, _ = run("prune", days=30)
        assert "incremental vacuum" in out
        assert disk_bytes(path) < before / 4
        assert store.stats().spans == 1
    finally:
        repository.use_store(None)
        store.close()


# -- export --------------------------------------------------------------------------------------
def test_export_a_time_range_to_jsonl(data, spans_over_time, tmp_path):
    target = tmp_path / "week.jsonl"
    out, err = run("export_spans", since="14d", output=str(target))
    lines = target.read_text(encoding="utf-8").splitlines()
    exported = [Span.from_document(json.loads(line)) for line in lines]
    assert exported == [spans_over_time["hour"], spans_over_time["week"]]  # newest first, whole
    assert out == ""  # nothing on stdout when writing a file
    assert "2/2 spans" in err and "100%" in err and f"exported 2 spans to {target}" in err
    assert not Path(f"{target}.part").exists()


def test_export_until_and_csv_to_stdout(data, spans_over_time):
    out, err = run("export_spans", until="2d", format="csv")
    rows = out.splitlines()
    assert rows[0] == ",".join(CSV_COLUMNS)
    assert [row.split(",")[2] for row in rows[1:]] == [spans_over_time["week"].span_id,
                                                      spans_over_time["month"].span_id]
    assert "2/2 spans" in err


def test_export_format_follows_the_file_name(data, spans_over_time, tmp_path):
    target = tmp_path / "all.csv"
    run("export_spans", output=str(target), no_progress=True)
    assert target.read_text().startswith("startTime,traceId,spanId")


def test_export_rejects_a_bad_time(data):
    with pytest.raises(CommandError, match="not a time"):
        run("export_spans", since="last tuesday")


def test_export_streams(data, monkeypatch):
    """Spans reach the output one at a time: the store's iterator is never drained first."""
    fill(data, 300)
    pulled = []
    original = data.iter_spans

    def iter_spans(query):
        for span in original(query):
            pulled.append(span.span_id)
            yield span

    monkeypatch.setattr(data, "iter_spans", iter_spans)
    written = []

    class Sink(io.StringIO):
        def write(self, text):
            written.append(len(pulled))
            return super().write(text)

    call_command("export_spans", stdout=Sink(), stderr=io.StringIO())
    assert len(pulled) == 300
    # the first span is written right after it was read, long before the last one is read
    assert written[0] <= 1 and len(written) >= 300


# -- import --------------------------------------------------------------------------------------
def test_import_is_idempotent_and_skips_bad_lines(data, tmp_path):
    good = [make_span(start=ago(minutes=m)) for m in range(3)]
    lines = [json.dumps(good[0].to_json()), "", "{not json", json.dumps(good[1].to_json()),
             json.dumps(["a", "list"]), json.dumps({"traceId": "x"}),
             json.dumps({**good[2].to_json(), "spanId": "NOT-HEX"}), json.dumps(good[2].to_json())]
    source = tmp_path / "spans.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")

    out, err = run("import_spans", str(source))
    assert "imported 3 spans into" in out and "3 new, 0 already present" in out
    assert "4 bad line(s) skipped" in out
    assert "line 3: not JSON" in err
    assert "line 5: not a span document (a JSON list)" in err
    assert "line 6: not a span document (no spanId)" in err
    assert "line 7: not a valid span" in err
    assert all_spans(data) == {span.span_id: span for span in good}

    out, _ = run("import_spans", str(source), batch_size=2)
    assert "0 new, 3 already present" in out  # re-importing adds nothing
    assert data.stats().spans == 3


def test_import_from_stdin_counts_new_and_present(data):
    first, second = make_span(), make_span()
    data.write_batch([first])
    text = (json.dumps(first.to_json()) + "\n" + json.dumps(second.to_json()) + "\n"
            + json.dumps(second.to_json()) + "\n")  # the same span twice in one file
    out, _ = run("import_spans", stdin=io.BytesIO(text.encode()))
    assert "imported 3 spans" in out and "1 new, 2 already present" in out
    assert data.get_span(second.span_id) == second


def test_import_of_a_file_without_spans_fails(data, tmp_path):
    source = tmp_path / "not-spans.csv"
    source.write_text("startTime,traceId\n2025-01-01,abc\n")
    with pytest.raises(CommandError, match="no span found"):
        run("import_spans", str(source))
    with pytest.raises(CommandError, match="cannot read"):
        run("import_spans", str(tmp_path / "missing.jsonl"))


# -- moving between stores -----------------------------------------------------------------------
def test_move_from_sqlite_to_the_mongodb_wire_server_loses_nothing(sqlite_store, mongo_store, tmp_path):
    fill(sqlite_store, 400, days=20, seed=9)
    odd = make_span(prompt="naïve café — 日本語 \"quotes\" \n newline", custom={"team": "core"},
                    user_id="u-1", cost=None)
    sqlite_store.write_batch([odd])
    dump = tmp_path / "spans.jsonl"
    try:
        repository.use_store(sqlite_store)
        run("export_spans", output=str(dump))
        repository.use_store(mongo_store)
        out, _ = run("import_spans", str(dump), batch_size=150)
        assert "401 new, 0 already present" in out
        out, _ = run("import_spans", str(dump))
        assert "0 new, 401 already present" in out
        back = tmp_path / "back.jsonl"
        run("export_spans", output=str(back))
    finally:
        repository.use_store(None)

    assert all_spans(mongo_store) == all_spans(sqlite_store)
    assert mongo_store.get_span(odd.span_id) == odd
    assert back.read_bytes() == dump.read_bytes()  # the same documents, in the same order
    def chart(store):  # float sums differ in the last digit with the summing order
        return [(r.start, r.group, r.requests, r.errors, r.prompt_tokens, r.completion_tokens,
                 round(r.cost, 9)) for r in store.aggregate(SpanQuery(), bucket="day", group_by="model")]

    assert chart(mongo_store) == chart(sqlite_store)
    assert mongo_store.list_spans(SpanQuery(text="café")).spans == [odd]


# -- check ---------------------------------------------------------------------------------------
def level_of(out: str, subject: str) -> str:
    """The level (ok, warning, error) check printed for a subject."""
    for line in out.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0] in ("ok", "warning", "error") and \
                parts[1].startswith(subject + " "):
            return parts[0]
    raise AssertionError(f"check said nothing about {subject!r}:\n{out}")


def test_check_passes_with_warnings_only(data, monkeypatch, tmp_path):
    monkeypatch.setenv("LLMFLOW_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("UPSTREAM_BROKEN", "http://no-such-host.invalid")
    monkeypatch.setenv("UPSTREAM_LOCAL", "http://127.0.0.1:9")
    out, _ = run("check")
    assert level_of(out, "configuration") == "ok" and "valid (spans go to SQLite" in out
    assert level_of(out, "data directory") == "ok"
    assert level_of(out, "store") == "ok" and "answers (0 spans)" in out
    assert level_of(out, "upstream broken") == "warning"  # may resolve where the proxy runs
    assert level_of(out, "upstream local") == "ok"
    assert level_of(out, "proxy CA") == "warning"  # made on the proxy's first start
    assert level_of(out, "login") == "warning"  # the default password
    assert "0 error(s)" in out
    assert "System check identified no issues" in out  # Django's own checks still run


def test_check_finds_the_proxy_ca(data, monkeypatch, tmp_path):
    monkeypatch.setenv("LLMFLOW_DATA_DIR", str(tmp_path))
    ca = tmp_path / "mitmproxy" / "mitmproxy-ca-cert.pem"
    ca.parent.mkdir()
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    out, _ = run("check")
    assert level_of(out, "proxy CA") == "ok"
    ca.write_text("garbage")
    out = io.StringIO()
    with pytest.raises(CommandError, match="1 error"):
        call_command("check", stdout=out, stderr=io.StringIO())
    assert level_of(out.getvalue(), "proxy CA") == "error"


def test_check_fails_when_the_store_is_unreachable():
    down = MongoStore(f"mongodb://127.0.0.1:{free_port()}/x?directConnection=true", timeout_ms=300)
    repository.use_store(down)
    try:
        out = io.StringIO()
        with pytest.raises(CommandError, match="error"):
            call_command("check", stdout=out, stderr=io.StringIO())
        assert "mongo is not reachable" in out.getvalue()
    finally:
        repository.use_store(None)
        down.close()


def test_check_reports_a_bad_setting(data, monkeypatch):
    monkeypatch.setenv("RETENTION_DAYS", "a month")
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("check", stdout=out, stderr=io.StringIO())
    assert "RETENTION_DAYS='a month' is not valid" in out.getvalue()


def test_host_lookups_are_bounded():
    answers = resolve_hosts(["localhost", "no-such-host.invalid"], timeout=2)
    assert answers["localhost"] is None
    assert answers["no-such-host.invalid"]


def test_progress_bar():
    shown = []
    bar = Progress(shown.append, 200, every=0)
    for _ in range(100):
        bar.advance()
    assert shown[-1] == "\r[###############---------------]  50%  100/200 spans"
    bar.finish()
    counter = Progress(shown.append, None)
    counter.advance(1234)
    assert shown[-1] == "\r1,234 spans"
