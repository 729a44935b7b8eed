"""The dashboard's one way to its data: the store from the configuration, opened once per process.

Views call ``store()``; tests swap it with ``use_store`` (a mongomock or temporary SQLite store).
"""

from __future__ import annotations

import threading

from django.conf import settings

from llmflow_core.store import SpanStore, open_store

_lock = threading.Lock()
_store: SpanStore | None = None


def store() -> SpanStore:
    global _store
    if _store is None:
        with _lock:
            if _store is None:
                _store = open_store(settings.LLMFLOW)
    return _store


def use_store(replacement: SpanStore | None) -> None:
    """Serve views from ``replacement`` (None: back to the configured store)."""
    global _store
    with _lock:
        _store = replacement
