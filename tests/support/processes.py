"""Start the real LLMFlow processes (and a MongoDB-wire server) for tests, and stop them.

The proxy and the dashboard run from the runtime virtualenv (``.venv``, see requirements/dev.txt),
exactly as ``make run`` starts them; the test process only talks to them over loopback.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_PYTHON = Path(os.environ.get("LLMFLOW_RUNTIME_PYTHON", ROOT / ".venv" / "bin" / "python"))
TEST_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


@dataclass
class Service:
    name: str
    process: subprocess.Popen
    port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    intercept_port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode


def spawn(name: str, args: list[str], port: int, log_dir: Path, env: dict[str, str] | None = None,
          timeout: float = 30.0) -> Service:
    """Start a process (output to ``log_dir``) and wait until it listens on ``port``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{port}.log"
    env = env if env is not None else dict(os.environ)
    with open(log_path, "wb") as handle:
        process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    service = Service(name, process, port, log_path, env)
    try:
        wait_for_port(port, timeout, process)
    except Exception as exc:
        service.stop()
        raise RuntimeError(f"{name} did not start: {exc}\n{service.log()[-3000:]}") from exc
    return service


def llmflow_env(data_dir: Path, **overrides: Any) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("UPSTREAM_", "MONGO_", "AUTH_", "DJANGO_"))}
    env.update({"LLMFLOW_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "INFO"})
    env.update({key: str(value) for key, value in overrides.items()})
    return env


def start_proxy(data_dir: Path, log_dir: Path, **env: Any) -> Service:
    """The proxy; ``service.intercept_port`` is its HTTPS_PROXY port."""
    port = int(env.pop("PROXY_PORT", 0)) or free_port()
    env.setdefault("INTERCEPT_PORT", free_port())
    service = spawn("proxy", [str(RUNTIME_PYTHON), "-m", "addon"], port, log_dir,
                    llmflow_env(data_dir, PROXY_PORT=port, **env))
    service.intercept_port = int(env["INTERCEPT_PORT"])
    wait_for_port(service.intercept_port, 10, service.process)
    return service


def query_store(data_dir: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows from the proxy's SQLite store, or [] while it is still being made.

    The recorder process creates the file and then its tables, so a poll can land in between
    and see "no such table"; that is "nothing stored yet", not an error."""
    path = data_dir / "llmflow.sqlite3"
    if not path.exists():
        return []
    try:
        with sqlite3.connect(path, timeout=10) as db:
            return db.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise


_static_collected = False


def ensure_static_collected() -> None:
    """gunicorn serves static files through whitenoise's manifest: collect them once per test
    session, so the browser never runs yesterday's JavaScript."""
    global _static_collected
    if not _static_collected:
        subprocess.run([str(RUNTIME_PYTHON), "manage.py", "collectstatic", "--noinput", "-v0"],
                       cwd=ROOT, check=True, env=llmflow_env(ROOT / "data"))
        _static_collected = True


def start_dashboard(data_dir: Path, log_dir: Path, **env: Any) -> Service:
    ensure_static_collected()
    port = int(env.pop("PORT", 0)) or free_port()
    return spawn("dashboard", [str(RUNTIME_PYTHON), "-m", "gunicorn", "llmflow_dashboard.wsgi",
                               "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "4"],
                 port, log_dir, llmflow_env(data_dir, PORT=port, **env))


def start_mongo_wire(storage: Path, log_dir: Path, port: int | None = None) -> Service:
    """SecantusDB, a MongoDB wire-protocol server (test-only dependency)."""
    port = port or free_port()
    binary = shutil.which("secantusd-py", path=str(TEST_BIN)) or "secantusd-py"
    storage.mkdir(parents=True, exist_ok=True)
    return spawn("mongo", [binary, "--host", "127.0.0.1", "--port", str(port),
                           "--storage-path", str(storage)], port, log_dir, timeout=60.0)
