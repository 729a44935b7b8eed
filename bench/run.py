"""LLMFlow's benchmark: the recording proxy side by side with bare mitmdump and direct calls.

    .venv-test/bin/python bench/run.py            # the whole thing (~20-30 min on 2 cores)
    .venv-test/bin/python bench/run.py --quick    # 100k spans for the dashboard, shorter soak
    .venv-test/bin/python bench/run.py --smoke    # the whole pipeline in seconds, tiny counts

Starts nginx (a fixed OpenAI chat completion) and a streaming SSE server on 127.0.0.1, then, in
rounds that alternate the targets, drives with wrk (POSTing a chat body): direct, bare
``mitmdump`` in reverse mode, and LLMFlow's proxy recording every call to SQLite (1 and 2
worker processes) and to a MongoDB-wire server (SecantusDB, a test server). Per target: added
latency p50/p99 at 1 connection, requests/s at 16 and 32 connections, a stream's time to first
byte, proxy CPU per request and peak RSS (process tree); medians over the rounds, as ratios to
bare mitmdump and to direct. Then: every call stored (spans vs requests), memory over a soak
through LLMFlow (100,000 requests), store write throughput (batches of 256), the dashboard's
list page and analytics at 1,000,000 spans (bench.dashboard_queries) and OTLP ingest
(bench.otlp_ingest). Prints a table; writes bench/results/bench.json and bench/results/bench.png.

Runs from the test virtualenv (.venv-test; requirements/bench.txt); the proxies run from the
runtime one (.venv), as `make run` starts them. Needs Debian's ``nginx`` and ``wrk``. Load stays
on 127.0.0.1 and every run is bounded in time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import load, procstat, upstreams  # noqa: E402
from tests.support.processes import RUNTIME_PYTHON, Service, start_mongo_wire  # noqa: E402

RESULTS = ROOT / "bench" / "results"
JSON_PATH = "/v1/chat/completions"
SSE_EVENTS, SSE_DELAY = 5, 0.05  # the SSE upstream: first event at once, then 5 more 50 ms apart


@dataclass(frozen=True)
class Profile:
    rounds: int
    seconds: float  # each wrk run
    ttfb_streams: int
    soak_requests: int
    soak_limit_s: float  # the soak stops here even if unfinished
    dashboard_spans: int
    dashboard_rounds: int
    otlp_batches: int
    store_spans: int
    mongo_store_spans: int


PROFILES = {
    "full": Profile(rounds=3, seconds=8, ttfb_streams=20, soak_requests=100_000, soak_limit_s=1500,
                    dashboard_spans=1_000_000, dashboard_rounds=20, otlp_batches=40,
                    store_spans=50_000, mongo_store_spans=5_000),
    "quick": Profile(rounds=3, seconds=5, ttfb_streams=15, soak_requests=30_000, soak_limit_s=600,
                     dashboard_spans=100_000, dashboard_rounds=20, otlp_batches=20,
                     store_spans=20_000, mongo_store_spans=2_000),
    "smoke": Profile(rounds=1, seconds=1, ttfb_streams=3, soak_requests=1_000, soak_limit_s=30,
                     dashboard_spans=2_000, dashboard_rounds=3, otlp_batches=2,
                     store_spans=1_000, mongo_store_spans=200),
}


@dataclass
class Target:
    name: str
    label: str
    service: Service  # the process whose CPU and memory are measured (its whole tree)
    port: int
    sse_port: int
    sse_path: str
    store: str | None = None  # "sqlite" / "mongo": LLMFlow, whose spans are counted
    data_dir: Path | None = None
    mongo_uri: str = ""
    workers: int = 1
    rounds: list[dict[str, Any]] = field(default_factory=list)
    requests_sent: int = 0  # responses received, over every run (warm-ups included)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{JSON_PATH}"


def log(message: str) -> None:
    print(message, flush=True)


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


# -- the side-by-side proxy benchmark -----------------------------------------------------------
def measure_round(target: Target, tools: dict[str, str], script: Path, profile: Profile,
                  warm: bool) -> dict[str, Any]:
    wrk = tools["wrk"]
    pid = target.service.process.pid
    if warm:
        target.requests_sent += load.wrk(wrk, script, target.url, 4, 1).requests
    result: dict[str, Any] = {}
    cpu0 = procstat.cpu_seconds(pid)
    one = load.wrk(wrk, script, target.url, 1, profile.seconds)
    cpu1 = procstat.cpu_seconds(pid)
    c16 = load.wrk(wrk, script, target.url, 16, profile.seconds)
    c32 = load.wrk(wrk, script, target.url, 32, profile.seconds)
    cpu3 = procstat.cpu_seconds(pid)
    for run in (one, c16, c32):
        target.requests_sent += run.requests
    result["c1"] = one.to_json()
    result["c16"] = c16.to_json()
    result["c32"] = c32.to_json()
    result["p50_ms"], result["p99_ms"] = one.p50_ms, one.p99_ms
    result["rps_c16"], result["rps_c32"] = c16.rps, c32.rps
    result["errors"] = one.error_count + c16.error_count + c32.error_count
    result["cpu_ms_per_request_c1"] = round((cpu1 - cpu0) * 1000 / max(1, one.requests), 3)
    result["cpu_ms_per_request"] = round((cpu3 - cpu1) * 1000 / max(1, c16.requests + c32.requests), 3)
    ttfb = load.ttfb(target.sse_port, target.sse_path, upstreams.CHAT_REQUEST, profile.ttfb_streams)
    target.requests_sent += ttfb.requests + 1  # + the uncounted warm-up stream
    result["ttfb"] = ttfb.to_json()
    result["ttfb_p50_ms"] = ttfb.p50_ms
    result["stream_total_ms"] = ttfb.total_p50_ms
    return result


def summarise(targets: list[Target]) -> dict[str, dict[str, Any]]:
    keys = ("p50_ms", "p99_ms", "rps_c16", "rps_c32", "cpu_ms_per_request", "cpu_ms_per_request_c1",
            "ttfb_p50_ms", "stream_total_ms")
    summary = {}
    for target in targets:
        row = {key: median([r[key] for r in target.rounds if key in r]) for key in keys}
        row["errors"] = sum(r.get("errors", 0) for r in target.rounds)
        summary[target.name] = row
    direct = summary.get("direct")
    for name, row in summary.items():
        base = direct or row
        row["added_p50_ms"] = _sub(row["p50_ms"], base["p50_ms"])
        row["added_p99_ms"] = _sub(row["p99_ms"], base["p99_ms"])
        row["ttfb_added_ms"] = _sub(row["ttfb_p50_ms"], base["ttfb_p50_ms"])
    return summary


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 3)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b in (None, 0) else round(a / b, 3)


def ratios(summary: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each target against bare mitmdump and against direct."""
    mitm, direct = summary.get("mitmdump"), summary.get("direct")
    out = {}
    for name, row in summary.items():
        if name == "direct":
            continue
        entry: dict[str, Any] = {}
        for key in ("added_p50_ms", "added_p99_ms", "rps_c16", "rps_c32", "cpu_ms_per_request",
                    "peak_rss_mb", "ttfb_p50_ms"):
            entry[key] = {"vs_mitmdump": _ratio(row.get(key), mitm.get(key)) if mitm else None}
        for key, direct_key in (("added_p50_ms", "p50_ms"), ("added_p99_ms", "p99_ms")):
            # "added" is 0 for direct: compare the whole latency instead
            entry[key]["vs_direct"] = _ratio(row.get(direct_key), direct.get(direct_key)) if direct else None
        for key in ("rps_c16", "rps_c32", "cpu_ms_per_request", "peak_rss_mb", "ttfb_p50_ms"):
            entry[key]["vs_direct"] = _ratio(row.get(key), direct.get(key)) if direct else None
        out[name] = entry
    return out


def count_spans(target: Target) -> int:
    if target.store == "mongo":
        from llmflow_core.store.mongo import MongoStore

        store = MongoStore(target.mongo_uri)
    else:
        from llmflow_core.store.sqlite import SQLiteStore

        store = SQLiteStore(target.data_dir / "llmflow.sqlite3")
    try:
        return store.stats().spans
    finally:
        store.close()


def writer_status(data_dir: Path) -> dict[str, int]:
    """The proxy's own counters (each worker writes one status file), summed."""
    totals: dict[str, int] = {}
    for path in sorted((data_dir / "status").glob("proxy-*.json")):
        try:
            status = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for key in ("queued", "written", "duplicates", "spooled", "replayed", "dropped", "pending"):
            totals[key] = totals.get(key, 0) + int(status.get(key) or 0)
    return totals


def account_spans(target: Target, settle: float = 60.0) -> dict[str, Any]:
    """Wait for the writer to catch up (bounded), stop the proxy (it drains), count spans."""
    deadline = time.monotonic() + settle
    last, still = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = count_spans(target)
        if count >= target.requests_sent:
            break
        if count != last:
            last, still = count, time.monotonic()
        elif time.monotonic() - still > 10:
            break
        time.sleep(0.5)
    code = target.service.stop(timeout=60)
    stored = count_spans(target)
    status = writer_status(target.data_dir)
    return {"requests": target.requests_sent, "stored": stored,
            "lost": max(0, target.requests_sent - stored), "writer": status,
            "proxy_exit_code": code,
            # wrk counts a response when it arrives: calls cut off at the end of a run are
            # recorded (as cancelled) but not counted by wrk, so stored can exceed requests
            "extra_in_flight": max(0, stored - target.requests_sent)}


def proxy_benchmark(tools: dict[str, str], profile: Profile, tmp: Path, with_2w: bool,
                    mongo: Service | None) -> dict[str, Any]:
    log(f"starting upstreams and proxies in {tmp}")
    services: list[Service] = []
    targets: list[Target] = []
    try:
        nginx = upstreams.start_nginx(tmp, tools["nginx"])
        services.append(nginx)
        sse = upstreams.start_sse(tmp, SSE_EVENTS, SSE_DELAY)
        services.append(sse)
        targets.append(Target("direct", "direct", nginx, nginx.port, sse.port, JSON_PATH))
        mitm, mitm_sse = upstreams.start_mitmdump(tmp, nginx.port, sse.port)
        services.append(mitm)
        targets.append(Target("mitmdump", "bare mitmdump", mitm, mitm.port, mitm_sse, JSON_PATH))
        variants = [("llmflow-sqlite", "LLMFlow SQLite", 1, "sqlite")]
        if with_2w:
            variants.append(("llmflow-sqlite-2w", "LLMFlow SQLite, 2 workers", 2, "sqlite"))
        if mongo is not None:
            variants.append(("llmflow-mongo", "LLMFlow MongoDB-wire", 1, "mongo"))
        for name, label, workers, store in variants:
            uri = (f"mongodb://127.0.0.1:{mongo.port}/llmflow_bench?directConnection=true"
                   if store == "mongo" and mongo else "")
            service = upstreams.start_llmflow(name, tmp, nginx.port, sse.port, workers=workers,
                                              mongo_uri=uri)
            services.append(service)
            targets.append(Target(name, label, service, service.port, service.port,
                                  "/ssebench" + JSON_PATH, store=store,
                                  data_dir=tmp / f"{name}-data", mongo_uri=uri, workers=workers))
        script = load.write_script(tmp, upstreams.CHAT_REQUEST)
        for round_index in range(profile.rounds):
            # alternate, and start each round with a different target
            order = targets[round_index % len(targets):] + targets[:round_index % len(targets)]
            for target in order:
                log(f"round {round_index + 1}/{profile.rounds}: {target.name}")
                result = measure_round(target, tools, script, profile, warm=round_index == 0)
                target.rounds.append(result)
                log(f"  p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms  "
                    f"{result['rps_c16']:.0f}/{result['rps_c32']:.0f} req/s (16/32 conns)  "
                    f"TTFB {result['ttfb_p50_ms']:.1f} ms  CPU {result['cpu_ms_per_request']:.2f} ms/req"
                    + (f"  ERRORS {result['errors']}" if result["errors"] else ""))
        summary = summarise(targets)
        for target in targets:
            pid = target.service.process.pid
            summary[target.name]["peak_rss_mb"] = round(procstat.peak_rss_mb(pid), 1)
            summary[target.name]["pss_mb"] = round(procstat.pss_mb(pid), 1)
            summary[target.name]["processes"] = len(procstat.tree(pid))
            summary[target.name]["label"] = target.label
        spans = {}
        for target in targets:
            if target.store:
                spans[target.name] = account_spans(target)
                log(f"{target.name}: {spans[target.name]['stored']} spans stored for "
                    f"{target.requests_sent} requests (lost {spans[target.name]['lost']})")
        return {"summary": summary, "ratios": ratios(summary), "spans": spans,
                "rounds": {t.name: t.rounds for t in targets}}
    finally:
        for service in reversed(services):
            service.stop()


# -- memory over a soak --------------------------------------------------------------------------
def soak(tools: dict[str, str], profile: Profile, tmp: Path) -> dict[str, Any]:
    services = []
    try:
        nginx = upstreams.start_nginx(tmp / "soak", tools["nginx"])
        services.append(nginx)
        sse = upstreams.start_sse(tmp / "soak", SSE_EVENTS, SSE_DELAY)
        services.append(sse)
        proxy = upstreams.start_llmflow("soak-llmflow-sqlite", tmp / "soak", nginx.port, sse.port)
        services.append(proxy)
        target = Target("soak", "soak", proxy, proxy.port, proxy.port, "/ssebench" + JSON_PATH,
                        store="sqlite", data_dir=tmp / "soak" / "soak-llmflow-sqlite-data")
        script = load.write_script(tmp / "soak", upstreams.CHAT_REQUEST)
        samples: list[tuple[float, float]] = []
        stop = threading.Event()
        started = time.monotonic()

        def sample() -> None:
            while not stop.is_set():
                samples.append((round(time.monotonic() - started, 1),
                                round(procstat.rss_mb(proxy.process.pid), 1)))
                stop.wait(1.0)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        log(f"soak: {profile.soak_requests} requests through LLMFlow (SQLite), 16 connections")
        run = load.wrk(tools["wrk"], script, target.url, 16, profile.soak_limit_s,
                       max_requests=profile.soak_requests)
        stop.set()
        sampler.join()
        target.requests_sent = run.requests
        peak = procstat.peak_rss_mb(proxy.process.pid)
        accounting = account_spans(target)
        values = [rss for _, rss in samples]
        first, last = values[0], values[-1]
        # warm-up: the first tenth of the run (buffers, caches and the allocator filling up)
        warm = values[min(len(values) - 1, len(values) // 10)]
        result = {"requests": run.requests, "seconds": run.seconds, "rps": run.rps,
                  "errors": run.error_count, "rss_first_mb": first, "rss_after_warmup_mb": warm,
                  "rss_last_mb": last, "rss_peak_mb": round(max(max(values), peak), 1),
                  "drift_pct": round((last / warm - 1) * 100, 1),
                  "drift_from_first_pct": round((last / first - 1) * 100, 1),
                  "samples": samples, "spans": accounting}
        log(f"soak: {run.requests} requests in {run.seconds:.0f}s, RSS {first} -> {warm} (after "
            f"warm-up) -> {last} MB (peak {result['rss_peak_mb']}, drift {result['drift_pct']:+.1f}% "
            f"after warm-up); {accounting['stored']} spans stored")
        return result
    finally:
        for service in reversed(services):
            service.stop()


# -- the store's own write rate ------------------------------------------------------------------
def store_writes(profile: Profile, tmp: Path, mongo_port: int | None) -> dict[str, Any]:
    from datetime import timedelta

    from llmflow_core.demo import demo_spans
    from llmflow_core.store.sqlite import SQLiteStore

    def rate(store: Any, count: int) -> dict[str, Any]:
        spans = list(demo_spans(count, end=datetime.now(timezone.utc) - timedelta(hours=1), days=1))
        started = time.perf_counter()
        written = 0
        for index in range(0, len(spans), 256):
            written += store.write_batch(spans[index:index + 256])
        elapsed = time.perf_counter() - started
        return {"spans": count, "written": written, "batch": 256, "seconds": round(elapsed, 2),
                "spans_per_second": round(written / elapsed)}

    out: dict[str, Any] = {}
    sqlite = SQLiteStore(tmp / "store-bench.sqlite3")
    try:
        out["sqlite"] = rate(sqlite, profile.store_spans)
    finally:
        sqlite.close()
    log(f"store writes, SQLite: {out['sqlite']['spans_per_second']:,} spans/s")
    if mongo_port:
        from llmflow_core.store.mongo import MongoStore

        mongo = MongoStore(f"mongodb://127.0.0.1:{mongo_port}/store_bench?directConnection=true")
        try:
            out["mongo_wire"] = rate(mongo, profile.mongo_store_spans)
            out["mongo_wire"]["note"] = ("SecantusDB, a MongoDB wire-protocol server in Python used "
                                         "for tests: not representative of MongoDB itself")
        finally:
            mongo.close()
        log(f"store writes, MongoDB-wire (SecantusDB, test server): "
            f"{out['mongo_wire']['spans_per_second']:,} spans/s")
    return out


# -- the existing benchmarks, run as they are ----------------------------------------------------
def run_module(module: str, args: list[str], out: Path, timeout: float) -> dict[str, Any]:
    """``bench.<module>`` with its RESULTS directory pointed at ``out``; its JSON result."""
    code = (f"import sys; from pathlib import Path; import bench.{module} as m; "
            f"m.RESULTS = Path({str(out)!r}); sys.argv = {[module] + args!r}; sys.exit(m.main())")
    log(f"running bench.{module} {' '.join(args)}")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=timeout)
    if done.returncode:
        raise RuntimeError(f"bench.{module} exited with {done.returncode}")
    return json.loads((out / f"{module}.json").read_text())


def dashboard_data_stale(out: Path, spans: int, max_age_h: float = 12.0) -> bool:
    """The dashboard benchmark reuses its store; spans end at build time, so after a day the
    "last 24 hours" pages would measure an empty window."""
    path = out / f"dashboard-{spans}" / "llmflow.sqlite3"
    if not path.exists():
        return False
    from llmflow_core.store.sqlite import SQLiteStore

    store = SQLiteStore(path)
    try:
        newest = store.stats().newest
    finally:
        store.close()
    return newest is None or (datetime.now(timezone.utc) - newest).total_seconds() > max_age_h * 3600


# -- report ------------------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def table(result: dict[str, Any]) -> str:
    lines = []
    proxy = result.get("proxy")
    if proxy:
        summary = proxy["summary"]
        names = list(summary)
        width = max(16, *(len(n) + 2 for n in names))
        head = f"{'':34s}" + "".join(f"{n:>{width}s}" for n in names)
        lines += [f"Proxy, medians of {result['meta']['rounds']} round(s) (wrk POST; 1 conn for "
                  f"latency)", head]
        rows = [("latency p50, 1 conn (ms)", "p50_ms", 3), ("added latency p50 (ms)", "added_p50_ms", 2),
                ("latency p99, 1 conn (ms)", "p99_ms", 2), ("added latency p99 (ms)", "added_p99_ms", 2),
                ("req/s, 16 conns", "rps_c16", 0), ("req/s, 32 conns", "rps_c32", 0),
                ("stream TTFB p50 (ms)", "ttfb_p50_ms", 2), ("stream TTFB added (ms)", "ttfb_added_ms", 2),
                ("CPU per request, 16/32 conns (ms)", "cpu_ms_per_request", 3),
                ("peak RSS, process tree (MB)", "peak_rss_mb", 1), ("PSS at end (MB)", "pss_mb", 1),
                ("processes", "processes", 0), ("wrk errors", "errors", 0)]
        for label, key, digits in rows:
            lines.append(f"{label:34s}" + "".join(f"{_fmt(summary[n].get(key), digits):>{width}s}"
                                                    for n in names))
        spans = proxy.get("spans", {})
        lines.append(f"{'spans stored / requests (lost)':34s}" + "".join(
            f"{(str(spans[n]['stored']) + '/' + str(spans[n]['requests']) + ' (' + str(spans[n]['lost']) + ')') if n in spans else '-':>{width}s}"
            for n in names))
        lines += ["", "Ratios: x bare mitmdump / x direct (added latency vs direct: whole latency)"]
        rnames = list(proxy["ratios"])
        lines.append(f"{'':34s}" + "".join(f"{n:>{width + 4}s}" for n in rnames))
        for label, key in (("added latency p50", "added_p50_ms"), ("added latency p99", "added_p99_ms"),
                           ("req/s, 16 conns", "rps_c16"), ("req/s, 32 conns", "rps_c32"),
                           ("stream TTFB p50", "ttfb_p50_ms"), ("CPU per request", "cpu_ms_per_request"),
                           ("peak RSS", "peak_rss_mb")):
            cells = []
            for n in rnames:
                r = proxy["ratios"][n][key]
                cells.append(f"{_x(r['vs_mitmdump']) + ' / ' + _x(r['vs_direct']):>{width + 4}s}")
            lines.append(f"{label:34s}" + "".join(cells))
    if "soak" in result:
        s = result["soak"]
        lines += ["", f"Soak, LLMFlow SQLite (1 process): {s['requests']:,} requests in {s['seconds']:.0f} s "
                  f"({s['rps']:.0f} req/s, {s['errors']} errors); RSS first {s['rss_first_mb']} MB, "
                  f"after warm-up {s['rss_after_warmup_mb']} MB, last {s['rss_last_mb']} MB, peak "
                  f"{s['rss_peak_mb']} MB; drift {s['drift_pct']:+.1f}% after warm-up (the first tenth), "
                  f"{s['drift_from_first_pct']:+.1f}% from the first sample; spans stored "
                  f"{s['spans']['stored']:,} (lost {s['spans']['lost']})"]
    if "store_writes" in result:
        w = result["store_writes"]
        line = f"Store writes (batches of 256): SQLite {w['sqlite']['spans_per_second']:,} spans/s"
        if "mongo_wire" in w:
            line += f"; MongoDB-wire {w['mongo_wire']['spans_per_second']:,} spans/s (SecantusDB test server)"
        lines += ["", line]
    if "dashboard" in result:
        d = result["dashboard"]
        lines += ["", f"Dashboard on SQLite, {d['spans']:,} spans ({d['rounds']} requests per page):"]
        for name, r in d["results"].items():
            lines.append(f"  {name:32s} p50 {r['p50_ms']:8.1f} ms   p95 {r['p95_ms']:8.1f} ms")
    if "otlp" in result:
        o = result["otlp"]
        lines += ["", f"OTLP ingest: {o['spans_per_second']:,} spans/s ({o['batches']} batches of "
                  f"{o['batch_size']}, batch p50 {o['batch_p50_ms']} ms)"]
    if result.get("goals"):
        lines += ["", "Targets from the issue (this run):"]
        for goal in result["goals"]:
            lines.append(f"  [{'met' if goal['met'] else 'NOT met' if goal['met'] is False else '?'}] "
                         f"{goal['goal']}: {goal['measured']}")
    if result.get("errors"):
        lines += ["", "Sections that failed:"] + [f"  {k}: {v.splitlines()[-1]}" for k, v in result["errors"].items()]
    return "\n".join(lines)


def goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, checked against this run (reported, never enforced)."""
    out = []

    def add(goal: str, met: bool | None, measured: str) -> None:
        out.append({"goal": goal, "met": met, "measured": measured})

    proxy = result.get("proxy")
    if proxy:
        s, r = proxy["summary"], proxy["ratios"]
        for name in (n for n in s if n.startswith("llmflow")):
            ratio = r[name]["added_p50_ms"]["vs_mitmdump"]
            add(f"{name}: added p50 <= 1.0x bare mitmdump", None if ratio is None else ratio <= 1.0,
                f"{_x(ratio)} ({_fmt(s[name]['added_p50_ms'])} vs {_fmt(s['mitmdump']['added_p50_ms'])} ms)")
            p99 = s[name]["added_p99_ms"]
            add(f"{name}: added p99 <= 10 ms", None if p99 is None else p99 <= 10, f"{_fmt(p99)} ms")
            tput = r[name]["rps_c32"]["vs_mitmdump"]
            lost = proxy["spans"].get(name, {}).get("lost")
            add(f"{name}: req/s at 32 conns >= 1.0x bare mitmdump, zero spans lost",
                None if tput is None else (tput >= 1.0 and lost == 0), f"{_x(tput)}, lost {lost}")
            ttfb = s[name]["ttfb_added_ms"]
            add(f"{name}: stream TTFB <= direct + 5 ms", None if ttfb is None else ttfb <= 5,
                f"+{_fmt(ttfb)} ms")
        best = max((n for n in s if n.startswith("llmflow")), key=lambda n: s[n]["rps_c32"] or 0, default=None)
        if best and s[best]["rps_c32"]:
            add(f"{best}: Portkey's ~585 req/s at 32 conns (the issue's figure, from its machine)",
                s[best]["rps_c32"] >= 585, f"{s[best]['rps_c32']:.0f} req/s")
    if "soak" in result:
        soak_ = result["soak"]
        add("proxy RSS <= 120 MB over the soak", soak_["rss_peak_mb"] <= 120, f"peak {soak_['rss_peak_mb']} MB")
        add("proxy RSS flat (+-10%) over the soak, after warm-up", abs(soak_["drift_pct"]) <= 10,
            f"{soak_['drift_pct']:+.1f}% ({soak_['rss_after_warmup_mb']} -> {soak_['rss_last_mb']} MB; "
            f"{soak_['drift_from_first_pct']:+.1f}% from the first sample)")
    if "dashboard" in result:
        d = result["dashboard"]["results"]
        page, day = d.get("list page", {}), d.get("analytics, 24 hours", {})
        add(f"dashboard list page p95 <= 150 ms at {result['dashboard']['spans']:,} spans",
            page.get("p95_ms", 1e9) <= 150, f"{page.get('p95_ms')} ms")
        add(f"24-hour analytics <= 500 ms at {result['dashboard']['spans']:,} spans",
            day.get("p95_ms", 1e9) <= 500, f"p95 {day.get('p95_ms')} ms")
    return out


def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    proxy = result.get("proxy")
    if proxy:
        summary = proxy["summary"]
        names = list(summary)
        colors = ["#888888", "#d62728"] + ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b"][:len(names) - 2]
        x = range(len(names))

        def bars(ax, keys: list[tuple[str, str]], title: str, unit: str) -> None:
            width = 0.8 / len(keys)
            for i, (key, label) in enumerate(keys):
                values = [summary[n].get(key) or 0 for n in names]
                pos = [p + (i - (len(keys) - 1) / 2) * width for p in x]
                drawn = ax.bar(pos, values, width, label=label,
                               color=colors if len(keys) == 1 else None)
                ax.bar_label(drawn, fmt="%.3g", fontsize=7)
            ax.set_xticks(list(x), names, rotation=20, ha="right", fontsize=8)
            ax.set_title(title, fontsize=10)
            ax.set_ylabel(unit)
            if len(keys) > 1:
                ax.legend(fontsize=8)

        bars(axes[0][0], [("added_p50_ms", "p50"), ("added_p99_ms", "p99")], "added latency, 1 connection", "ms")
        direct_rps = (summary.get("direct") or {}).get("rps_c32")
        bars(axes[0][1], [("rps_c16", "16 conns"), ("rps_c32", "32 conns")],
             f"throughput (direct: {direct_rps or 0:,.0f} req/s, clipped)", "req/s")
        proxies = [summary[n]["rps_c32"] or 0 for n in names if n != "direct"]
        if proxies:
            axes[0][1].set_ylim(0, max(proxies) * 1.3)
        bars(axes[0][2], [("ttfb_p50_ms", "TTFB p50")], "stream time to first byte (mitmdump buffers)", "ms")
        axes[0][2].set_yscale("log")
        bars(axes[1][0], [("cpu_ms_per_request", "CPU")], "CPU per request (process tree)", "ms")
        bars(axes[1][1], [("peak_rss_mb", "peak RSS"), ("pss_mb", "PSS at end")], "memory", "MB")
    if "soak" in result:
        ax = axes[1][2]
        samples = result["soak"]["samples"]
        ax.plot([t for t, _ in samples], [m for _, m in samples], color="#1f77b4")
        ax.axhline(120, color="#d62728", linestyle="--", linewidth=1, label="120 MB target")
        ax.set_ylim(0, max(130, max(m for _, m in samples) * 1.1))
        ax.set_title(f"LLMFlow RSS over {result['soak']['requests']:,} requests", fontsize=10)
        ax.set_xlabel("s")
        ax.set_ylabel("MB")
        ax.legend(fontsize=8)
    else:
        axes[1][2].axis("off")
    meta = result["meta"]
    fig.suptitle(f"LLMFlow benchmark ({meta['profile']}, {meta['cpus']} cores, load avg at start "
                 f"{meta['loadavg_start'][0]:.1f}) {meta['when'][:16]}", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_true", help="the whole pipeline in seconds (CI)")
    mode.add_argument("--quick", action="store_true", help="100k spans for the dashboard, shorter runs")
    parser.add_argument("--rounds", type=int, help="rounds of the side-by-side runs")
    parser.add_argument("--seconds", type=float, help="length of each wrk run")
    parser.add_argument("--soak-requests", type=int)
    parser.add_argument("--dashboard-spans", type=int)
    parser.add_argument("--skip", default="", help="comma-separated: proxy,2w,mongo,soak,store,dashboard,otlp")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where bench.json / bench.png go")
    args = parser.parse_args(argv)
    name = "smoke" if args.smoke else "quick" if args.quick else "full"
    base = PROFILES[name]
    profile = Profile(**{**base.__dict__, **{k: v for k, v in {
        "rounds": args.rounds, "seconds": args.seconds, "soak_requests": args.soak_requests,
        "dashboard_spans": args.dashboard_spans}.items() if v is not None}})
    skip = {part.strip() for part in args.skip.split(",") if part.strip()}
    tools = upstreams.require_tools()
    if not Path(RUNTIME_PYTHON).exists():
        raise SystemExit(f"the runtime virtualenv is missing ({RUNTIME_PYTHON}): run `make runtime`")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    result: dict[str, Any] = {"meta": {
        "profile": name, "rounds": profile.rounds, "seconds_per_run": profile.seconds,
        "command": " ".join(shlex.quote(a) for a in [sys.executable, "bench/run.py", *(argv or sys.argv[1:])]),
        "when": datetime.now(timezone.utc).isoformat(), "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(), "python": platform.python_version(),
        "nginx": subprocess.run([tools["nginx"], "-v"], capture_output=True, text=True).stderr.strip(),
        "mitmproxy": subprocess.run([upstreams.mitmdump_path(), "--version"], capture_output=True,
                                    text=True).stdout.splitlines()[0].strip(),
        "profile_settings": profile.__dict__}}
    errors: dict[str, str] = {}

    def section(key: str, run: Callable[[], Any]) -> Any:
        try:
            value = run()
            if value is not None:
                result[key] = value
            return value
        except Exception:
            errors[key] = traceback.format_exc()
            log(f"{key} FAILED:\n{errors[key]}")
            return None

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="llmflow-bench-") as tmp_name:
        tmp = Path(tmp_name)
        mongo: Service | None = None
        try:
            if "mongo" not in skip and not {"proxy", "store"} <= skip:
                mongo = section("mongo_server", lambda: start_mongo_wire(tmp / "mongo-db", tmp))
                result.pop("mongo_server", None)
            if "proxy" not in skip:
                section("proxy", lambda: proxy_benchmark(tools, profile, tmp / "proxy", "2w" not in skip,
                                                         mongo))
            if "soak" not in skip:
                section("soak", lambda: soak(tools, profile, tmp))
            if "store" not in skip:
                section("store_writes", lambda: store_writes(profile, tmp, mongo.port if mongo else None))
        finally:
            if mongo is not None:
                mongo.stop()
        if "dashboard" not in skip:
            def dashboard() -> dict[str, Any]:
                if dashboard_data_stale(out, profile.dashboard_spans):
                    log("the dashboard benchmark's spans are over 12 h old: rebuilding them")
                    shutil.rmtree(out / f"dashboard-{profile.dashboard_spans}")
                return run_module("dashboard_queries", ["--spans", str(profile.dashboard_spans),
                                                        "--rounds", str(profile.dashboard_rounds)],
                                  out, timeout=7200)
            section("dashboard", dashboard)
        if "otlp" not in skip:
            section("otlp", lambda: run_module("otlp_ingest", ["--batches", str(profile.otlp_batches)],
                                               out, timeout=1800))
    result["meta"]["loadavg_end"] = os.getloadavg()
    result["meta"]["wall_seconds"] = round(time.monotonic() - started)
    result["goals"] = goals(result)
    result["errors"] = errors
    (out / "bench.json").write_text(json.dumps(result, indent=2, default=str))
    section("chart", lambda: chart(result, out / "bench.png"))
    if "chart" in errors:
        (out / "bench.json").write_text(json.dumps(result, indent=2, default=str))
    print()
    print(table(result))
    print(f"\nwrote {out / 'bench.json'} and {out / 'bench.png'} in {result['meta']['wall_seconds']} s "
          f"(load average {result['meta']['loadavg_start'][0]:.1f} at start, "
          f"{result['meta']['loadavg_end'][0]:.1f} at end, {os.cpu_count()} cores)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
