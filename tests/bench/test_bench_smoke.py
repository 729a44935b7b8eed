"""The benchmark harness must not rot: ``bench/run.py --smoke`` runs its whole pipeline in
seconds (tiny counts, one round) and writes its JSON result and chart. No thresholds here:
the numbers of a smoke run on a busy CI machine mean nothing; `make bench` is the measurement.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.support.processes import ROOT

pytestmark = pytest.mark.e2e

TARGETS = ("direct", "mitmdump", "llmflow-sqlite", "llmflow-sqlite-2w", "llmflow-mongo")
PER_TARGET = ("p50_ms", "p99_ms", "added_p50_ms", "added_p99_ms", "rps_c16", "rps_c32", "ttfb_p50_ms",
              "ttfb_added_ms", "cpu_ms_per_request", "peak_rss_mb", "pss_mb", "processes", "errors")
RATIOS = ("added_p50_ms", "added_p99_ms", "rps_c16", "rps_c32", "cpu_ms_per_request", "peak_rss_mb",
          "ttfb_p50_ms")


@pytest.mark.timeout(900)
def test_smoke_run_writes_every_result(tmp_path):
    missing = [tool for tool in ("nginx", "wrk")
               if not (shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/usr/bin"))]
    if missing:
        pytest.fail(f"the benchmark needs {' and '.join(missing)} (Debian packages; `make test` installs "
                    f"them): apt-get install -y {' '.join(missing)}")
    done = subprocess.run([sys.executable, "bench/run.py", "--smoke", "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=840)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]

    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["errors"] == {}
    assert result["meta"]["profile"] == "smoke"

    proxy = result["proxy"]
    assert set(proxy["summary"]) == set(TARGETS)
    for name in TARGETS:
        row = proxy["summary"][name]
        missing_keys = [key for key in PER_TARGET if key not in row]
        assert not missing_keys, (name, missing_keys)
        assert row["rps_c32"] > 0 and row["p50_ms"] > 0 and row["ttfb_p50_ms"] > 0, (name, row)
        assert len(proxy["rounds"][name]) == 1
    # the supervisor, 2 workers and their 2 recorder processes
    assert proxy["summary"]["llmflow-sqlite-2w"]["processes"] == 5
    for name in TARGETS[1:]:
        for key in RATIOS:
            assert set(proxy["ratios"][name][key]) == {"vs_mitmdump", "vs_direct"}, (name, key)
    for name in TARGETS[2:]:
        spans = proxy["spans"][name]
        assert {"requests", "stored", "lost", "writer"} <= set(spans), name
        assert spans["stored"] > 0, (name, spans)

    soak = result["soak"]
    assert {"requests", "rss_first_mb", "rss_last_mb", "rss_peak_mb", "drift_pct", "samples", "spans"} <= set(soak)
    assert soak["requests"] >= 1000 and soak["samples"]

    assert result["store_writes"]["sqlite"]["spans_per_second"] > 0
    assert result["store_writes"]["mongo_wire"]["spans_per_second"] > 0
    dashboard = result["dashboard"]
    assert dashboard["spans"] == 2000
    assert {"list page", "analytics, 24 hours"} <= set(dashboard["results"])
    assert result["otlp"]["spans_per_second"] > 0
    assert result["goals"]

    png = (tmp_path / "bench.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert "Ratios: x bare mitmdump / x direct" in done.stdout
