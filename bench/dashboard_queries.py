"""Dashboard response times at scale: the list page and analytics over N spans on SQLite.

    .venv-test/bin/python -m bench.dashboard_queries --spans 1000000

Builds (once, then reuses) an SQLite store of demo spans spread over 7 days ending now, starts
the real dashboard (gunicorn, as `make run` does) on loopback, and times each page over
repeated requests. Prints p50/p95 per page and writes bench/results/dashboard_queries.json.

The analytics windows end at the newest stored span, not at the clock: a reused store's spans
stop when it was built, so "the last 24 hours" by the clock would cover less and less data (and
time less and less work) as the store ages. Anchored, "24 hours" is always 24 hours of data,
exactly what ``range=24h`` shows right after the spans were written.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from itertools import islice
from pathlib import Path
from urllib.parse import urlencode

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmflow_core.demo import demo_spans  # noqa: E402
from llmflow_core.spans import iso  # noqa: E402
from llmflow_core.store import SpanQuery  # noqa: E402
from llmflow_core.store.sqlite import SQLiteStore  # noqa: E402
from tests.support.processes import start_dashboard  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def build(path: Path, count: int) -> SQLiteStore:
    store = SQLiteStore(path)
    have = store.stats().spans
    if have >= count:
        print(f"reusing {path} ({have} spans)")
        return store
    print(f"writing {count} demo spans to {path} ...")
    started = time.perf_counter()
    source = demo_spans(count, end=datetime.now(timezone.utc), days=7)
    done = 0
    while batch := list(islice(source, 5000)):
        done += store.write_batch(batch)
        if done % 100_000 < 5000:
            print(f"  {done} spans, {done / (time.perf_counter() - started):.0f} spans/s", flush=True)
    print(f"wrote {done} spans in {time.perf_counter() - started:.0f}s")
    return store


def timed(session: requests.Session, url: str, rounds: int) -> dict[str, float]:
    session.get(url, timeout=60).raise_for_status()  # warm up
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        response = session.get(url, timeout=60)
        samples.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    samples.sort()
    return {"p50_ms": round(statistics.median(samples), 1),
            "p95_ms": round(samples[max(0, int(len(samples) * 0.95) - 1)], 1),
            "max_ms": round(samples[-1], 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = RESULTS / f"dashboard-{args.spans}"
    store = build(data / "llmflow.sqlite3", args.spans)
    model = store.distinct("model")[0]
    cursor = store.list_spans(SpanQuery(limit=50)).next
    since_day = (datetime.now(timezone.utc) - timedelta(hours=24)).isoformat()
    end = store.stats().newest + timedelta(milliseconds=1)  # until is exclusive
    store.close()

    def last(hours: int) -> str:
        """The analytics window of ``hours`` ending at the newest span (see the module doc)."""
        return urlencode({"since": iso(end - timedelta(hours=hours)), "until": iso(end)})

    dashboard = start_dashboard(data, RESULTS)
    try:
        session = requests.Session()
        session.auth = ("llmflow", "password")
        base = dashboard.url
        pages = {
            "list page": "/",
            "list page, next page (cursor)": f"/?cursor={cursor}",
            "list page, model filter": f"/?model={model}",
            "list page, last 24 h": "/?range=24h",
            "list page, full-text search": "/?q=haiku",
            "live-update poll": f"/traces/rows?since={since_day[:19]}&limit=1",
            "API /api/spans": "/api/spans?limit=50",
            "analytics, 24 hours": f"/api/analytics?{last(24)}",
            "analytics, 7 days": f"/api/analytics?{last(24 * 7)}",
        }
        # pages need a session cookie; Basic auth covers /api/, so log in once for the rest
        session.get(base + "/login")
        session.post(base + "/login", data={"username": "llmflow", "password": "password",
                                            "csrfmiddlewaretoken": session.cookies["csrftoken"]},
                     headers={"Referer": base + "/login"})
        results = {}
        for name, path in pages.items():
            results[name] = timed(session, base + path, args.rounds)
            print(f"{name:32s} p50 {results[name]['p50_ms']:8.1f} ms   p95 {results[name]['p95_ms']:8.1f} ms")
    finally:
        dashboard.stop()
    out = {"spans": args.spans, "rounds": args.rounds, "results": results,
           "when": datetime.now(timezone.utc).isoformat()}
    (RESULTS / "dashboard_queries.json").write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
