"""What the dashboard says about the proxies: read from their status files (llmflow_core.status)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest

from llmflow_core.status import read_statuses


def proxies() -> list[dict[str, Any]]:
    return read_statuses(settings.LLMFLOW.data_dir)


def problems(statuses: list[dict[str, Any]]) -> list[str]:
    """Plain sentences for the banner: lost spans, spans waiting on disk, a store that is down."""
    found = []
    for status in statuses:
        name = f"proxy {status.get('host', '?')} (pid {status.get('pid', '?')})"
        if status.get("dropped"):
            found.append(f"{name} LOST {status['dropped']} span(s): the store was down and the "
                         f"spool full or failing. The calls themselves went through.")
        if not status.get("store_ok", True):
            found.append(f"{name} cannot reach the store ({status.get('last_error')}); "
                         f"spans are kept on disk and written when it is back.")
        elif status.get("spool_bytes"):
            found.append(f"{name} is writing {status['spool_bytes']} bytes of spooled spans back "
                         f"to the store.")
    return found


def context(request: HttpRequest) -> dict[str, object]:
    return {"health_problems": problems(proxies())}
