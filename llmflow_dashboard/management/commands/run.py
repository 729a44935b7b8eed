"""``python manage.py run``: the proxy and the dashboard together, in the foreground.

Prints the effective configuration (secrets masked), starts ``python -m addon`` and gunicorn,
and stops both on Ctrl-C / SIGTERM (the proxy drains its span queue first). If either child
exits, the other is stopped too, so a half-running LLMFlow never goes unnoticed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from llmflow_core import config as llmflow_config

BASE_DIR = Path(settings.BASE_DIR)


class Command(BaseCommand):
    help = "Run LLMFlow: the proxy (PROXY_PORT) and the dashboard (PORT) in the foreground."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")

    def handle(self, *args, workers: int = 2, **options) -> None:
        config = settings.LLMFLOW
        width = max(len(name) for name, _ in llmflow_config.describe(config))
        self.stdout.write("LLMFlow configuration:")
        for name, value in llmflow_config.describe(config):
            self.stdout.write(f"  {name.ljust(width)}  {value}")
        config.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        host = config.bind_host
        children = [
            subprocess.Popen([sys.executable, "-m", "addon"], cwd=BASE_DIR, env=env),
            subprocess.Popen([sys.executable, "-m", "gunicorn", "llmflow_dashboard.wsgi",
                              "--bind", f"{host}:{config.port}", "--workers", str(workers),
                              "--threads", "4", "--graceful-timeout", "10",
                              "--access-logfile", "-", "--log-level", "warning"],
                             cwd=BASE_DIR, env=env),
        ]
        shown = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host
        self.stdout.write(self.style.SUCCESS(
            f"\nProxy:     http://{shown}:{config.proxy_port}/v1  (OpenAI SDK base_url)\n"
            f"Dashboard: http://{shown}:{config.port}/  (login {config.auth_username})\n"
            f"Ctrl-C stops both.\n"))
        if config.uses_default_credentials:
            self.stdout.write(self.style.WARNING(
                "The default login is in use: set AUTH_USERNAME and AUTH_PASSWORD."))

        stopping = False

        def stop(*_: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        while not stopping and all(child.poll() is None for child in children):
            time.sleep(0.2)
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
        failed = [c for c in children if c.returncode not in (0, -signal.SIGTERM, None)]
        if failed and not stopping:
            raise SystemExit(1)
