"""Proxy health, shared with the dashboard through small JSON files in the data directory.

Each proxy process writes ``status/proxy-<host>-<pid>.json`` every few seconds (spans written,
spooled, dropped, store state). The dashboard reads them for /healthz and its warning banner.
Compose mounts one data volume on both, as a single host shares ./data.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

STALE_AFTER = 300.0  # seconds without an update: that proxy is gone


def status_file(data_dir: Path) -> Path:
    directory = data_dir / "status"
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"proxy-{socket.gethostname()}-{os.getpid()}.json"


def read_statuses(data_dir: Path, now: float | None = None) -> list[dict[str, Any]]:
    """Every proxy's latest status, fresh ones only (a stopped proxy's file is kept, not shown)."""
    now = now or time.time()
    found = []
    directory = data_dir / "status"
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob("proxy-*.json")):
        try:
            status = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if now - float(status.get("updated", 0)) <= STALE_AFTER:
            status["name"] = path.stem
            found.append(status)
    return found
