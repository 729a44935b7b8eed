"""Where LLMFlow's proxy spends its time under load: py-spy on one proxy process.

    .venv-test/bin/python -m bench.profile_proxy --seconds 20 [--connections 32] [--gil]

Starts nginx (bench.upstreams) and LLMFlow's proxy recording to SQLite (one process), drives it
with wrk for ``--seconds`` and samples it meanwhile with ``py-spy record`` (``pip install
py-spy`` into the test virtualenv; it needs ptrace, which root has). Prints the share of
samples per thread, per area of code (mitmproxy's layers, asyncio, hook dispatch, LLMFlow's
hooks, the hand-over to the recorder process...) and the functions with the most own time
(the recorder process itself, which builds and stores the spans, is not sampled); writes the collapsed
stacks and a flame graph (SVG) to bench/results/. ``--gil`` samples only the thread holding
the GIL: what competes with the event loop.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import load, upstreams  # noqa: E402

RESULTS = ROOT / "bench" / "results"
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

# First match wins, checked from the innermost frame outwards (own time of a sample).
AREAS = [
    ("LLMFlow addon hooks (event loop)", ("addon/llmflow.py", "llmflow_core/exchange.py")),
    ("LLMFlow recorder hand-over (pickle, pipe)", ("llmflow_core/recorder.py",)),
    ("LLMFlow writer: build span", ("llmflow_core/capture.py", "llmflow_core/providers", "llmflow_core/redact",
                                    "llmflow_core/pricing", "llmflow_core/spans", "llmflow_core/tracing",
                                    "llmflow_core/text", "genai_prices", "pydantic")),
    ("LLMFlow writer: store (SQLite)", ("llmflow_core/store",)),
    ("LLMFlow writer: queue/threads", ("llmflow_core/writer.py", "queue.py", "threading.py")),
    ("mitmproxy hook dispatch / addons", ("mitmproxy/addonmanager.py", "mitmproxy/addons/",
                                          "mitmproxy/hooks.py", "mitmproxy/eventsequence.py")),
    ("mitmproxy HTTP/1 parsing & assembly", ("mitmproxy/net/http", "mitmproxy/http.py", "mitmproxy/coretypes",
                                             "h11", "mitmproxy/proxy/layers/http/_http1.py")),
    ("mitmproxy layers (state machine)", ("mitmproxy/proxy/layers", "mitmproxy/proxy/layer.py",
                                          "mitmproxy/proxy/tunnel.py", "mitmproxy/proxy/commands.py",
                                          "mitmproxy/proxy/events.py", "mitmproxy/proxy/context.py",
                                          "mitmproxy/connection.py", "mitmproxy/flow.py")),
    ("mitmproxy server (connection handler)", ("mitmproxy/proxy/server.py", "mitmproxy/proxy/mode_servers.py",
                                               "mitmproxy/utils/asyncio_utils.py")),
    ("asyncio event loop & streams", ("asyncio/",)),
    ("socket I/O", ("socket.py", "selectors.py", "ssl.py")),
    ("logging", ("logging/",)),
]


def area(frames: list[tuple[str, str]]) -> str:
    for func, path in reversed(frames):
        for name, needles in AREAS:
            if any(needle in path for needle in needles):
                return name
    return "other"


def parse(raw: Path) -> list[tuple[list[tuple[str, str]], str, int]]:
    samples = []
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = []
        thread = ""
        for part in stack.split(";"):
            match = FRAME.match(part)
            if part.startswith("thread ") or part.startswith("process "):
                thread = part if part.startswith("thread ") else thread
                continue
            if match:
                frames.append((match["func"], match["file"]))
        samples.append((frames, thread, int(count)))
    return samples


def report(samples: list[tuple[list[tuple[str, str]], str, int]], top: int = 25) -> str:
    total = sum(count for _, _, count in samples) or 1
    by_thread: Counter[str] = Counter()
    by_area: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for frames, thread, count in samples:
        kind = "writer threads" if any("writer.py" in f for _, f in frames) else "event loop (main thread)"
        by_thread[kind] += count
        by_area[area(frames)] += count
        if frames:
            func, path = frames[-1]
            short = path.split("site-packages/")[-1].replace(str(ROOT) + "/", "")
            own[f"{func} ({short})"] += count
    lines = [f"{total} samples"]
    lines += ["", "by thread:"] + [f"  {n * 100 / total:5.1f}%  {name}" for name, n in by_thread.most_common()]
    lines += ["", "by area (own time):"] + [f"  {n * 100 / total:5.1f}%  {name}" for name, n in by_area.most_common()]
    lines += ["", f"top {top} functions by own time:"]
    lines += [f"  {n * 100 / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--gil", action="store_true", help="only samples holding the GIL")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if not py_spy:
        raise SystemExit("py-spy is missing: .venv-test/bin/pip install py-spy")
    tools = upstreams.require_tools()
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "-gil" if args.gil else ""
    with tempfile.TemporaryDirectory(prefix="llmflow-profile-") as tmp_name:
        tmp = Path(tmp_name)
        nginx = upstreams.start_nginx(tmp, tools["nginx"])
        sse = upstreams.start_sse(tmp, 5, 0.05)
        proxy = upstreams.start_llmflow("profiled-llmflow", tmp, nginx.port, sse.port, workers=args.workers)
        try:
            from bench.procstat import tree

            pid = tree(proxy.process.pid)[-1]  # the (last) worker, or the proxy itself
            script = load.write_script(tmp, upstreams.CHAT_REQUEST)
            url = f"http://127.0.0.1:{proxy.port}/v1/chat/completions"
            load.wrk(tools["wrk"], script, url, 4, 2)  # warm up
            outcome: dict = {}
            driver = threading.Thread(target=lambda: outcome.update(
                run=load.wrk(tools["wrk"], script, url, args.connections, args.seconds + 2)))
            driver.start()
            raw = RESULTS / f"profile{suffix}.txt"
            svg = RESULTS / f"profile{suffix}.svg"
            common = [py_spy, "record", "--pid", str(pid), "--duration", str(args.seconds),
                      "--rate", str(args.rate), "--threads", "--nonblocking"] + (["--gil"] if args.gil else [])
            subprocess.run(common + ["--format", "raw", "-o", str(raw)], check=True,
                           capture_output=True)
            driver.join()
            run = outcome.get("run")
            print(f"load: {run.rps if run else '?'} req/s at {args.connections} connections "
                  f"(p50 {run.p50_ms if run else '?'} ms) while sampling pid {pid}")
            text = report(parse(raw))
            print(text)
            (RESULTS / f"profile{suffix}-summary.txt").write_text(text + "\n")
            # a flame graph of a second, shorter sample (py-spy writes one format per run)
            driver = threading.Thread(target=lambda: load.wrk(tools["wrk"], script, url,
                                                              args.connections, 7))
            driver.start()
            subprocess.run(common[:5] + ["5"] + common[6:] + ["--format", "flamegraph", "-o", str(svg)],
                           check=False, capture_output=True)
            driver.join()
            print(f"wrote {raw}, {svg} and {RESULTS / f'profile{suffix}-summary.txt'}")
        finally:
            proxy.stop()
            sse.stop()
            nginx.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
