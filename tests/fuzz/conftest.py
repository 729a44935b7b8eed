"""The fuzz suite's settings profile and its case counter.

Time-boxed for CI: every property test runs ``LLMFLOW_FUZZ_EXAMPLES`` examples (default 150;
raise it for a longer local run, e.g. ``LLMFLOW_FUZZ_EXAMPLES=5000 pytest tests/fuzz
--timeout=0``: pytest-timeout's 300 s per test would cut such a run short), no per-example
deadline (a 1 MB body on a busy CI machine is slow, not wrong). Hypothesis's example database lives in
``test-artifacts/`` (gitignored), so a failure found once is replayed first on the next run.

Every property test counts what it ran (``tally``); at the end of the session the numbers are
printed and written to ``test-artifacts/fuzz-stats.json``: cases (examples executed, shrinking
included) and payloads (bodies/requests handed to a parser, ``build_span``, the OTLP decoder
or the receiver), with their total size.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

from tests.fuzz.stats import STATS

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
EXAMPLES = int(os.environ.get("LLMFLOW_FUZZ_EXAMPLES", "150"))

settings.register_profile(
    "llmflow-fuzz",
    max_examples=EXAMPLES,
    deadline=None,
    print_blob=True,
    database=DirectoryBasedExampleDatabase(str(ARTIFACTS / "hypothesis-db")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.large_base_example, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "llmflow-fuzz"))

_STARTED = time.monotonic()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not STATS:
        return
    totals = {key: sum(entry[key] for entry in STATS.values()) for key in ("cases", "payloads", "bytes")}
    report = {"examples_setting": EXAMPLES, "seconds": round(time.monotonic() - _STARTED, 1),
              "totals": totals, "tests": dict(sorted(STATS.items()))}
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "fuzz-stats.json").write_text(json.dumps(report, indent=2) + "\n")
    write = terminalreporter.write_line
    terminalreporter.section("fuzz statistics")
    for name, entry in sorted(STATS.items()):
        write(f"{name:<58} {entry['cases']:>7} cases {entry['payloads']:>8} payloads "
              f"{entry['bytes'] / 1e6:>9.1f} MB")
    write(f"{'TOTAL':<58} {totals['cases']:>7} cases {totals['payloads']:>8} payloads "
          f"{totals['bytes'] / 1e6:>9.1f} MB   (test-artifacts/fuzz-stats.json)")
