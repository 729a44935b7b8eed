import json
import time

from django.conf import settings
from django.test import Client

from llmflow_core.status import read_statuses


def write_status(name: str, **fields) -> None:
    directory = settings.LLMFLOW.data_dir / "status"
    directory.mkdir(parents=True, exist_ok=True)
    base = {"written": 10, "spooled": 0, "dropped": 0, "store_ok": True, "spool_bytes": 0,
            "last_error": None, "updated": time.time(), "pid": 42, "host": "box"}
    (directory / f"proxy-{name}.json").write_text(json.dumps({**base, **fields}))


def test_lost_spans_are_said_loudly_on_every_page(logged_in):
    write_status("a", dropped=7, store_ok=False, last_error="connection refused", spool_bytes=999)
    try:
        html = logged_in.get("/").content.decode()
        assert "LOST 7 span(s)" in html and "cannot reach the store (connection refused)" in html
        health = Client().get("/healthz").json()
        assert health["proxies"][0]["dropped"] == 7 and health["proxies"][0]["store_ok"] is False
    finally:
        (settings.LLMFLOW.data_dir / "status" / "proxy-a.json").unlink()
    assert "LOST" not in logged_in.get("/").content.decode()


def test_stale_status_files_are_ignored(data):
    write_status("old", updated=time.time() - 3600, dropped=3)
    try:
        assert [s for s in read_statuses(settings.LLMFLOW.data_dir) if s["name"] == "proxy-old"] == []
    finally:
        (settings.LLMFLOW.data_dir / "status" / "proxy-old.json").unlink()
