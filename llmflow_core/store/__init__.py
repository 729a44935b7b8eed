"""Span stores behind one contract; ``open_store`` picks one from the configuration."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from llmflow_core.config import Config
from llmflow_core.store.base import (
    BadCursor, BucketRow, Page, SpanQuery, SpanStore, StoreError, StoreStats,
)


def apply_retention(store: SpanStore, config: Config, now: datetime | None = None) -> tuple[int, int]:
    """RETENTION_DAYS and RETENTION_PAYLOAD_DAYS on a store: (spans deleted, payloads dropped)."""
    now = now or datetime.now(timezone.utc)
    deleted = dropped = 0
    if config.retention_days:
        deleted = store.prune(now - timedelta(days=config.retention_days))
    if config.retention_payload_days:
        dropped = store.prune_payloads(now - timedelta(days=config.retention_payload_days))
    return deleted, dropped


def open_store(config: Config, *, writer: bool = False) -> SpanStore:
    """MongoDB when MONGO_URI is set, else the embedded SQLite file in LLMFLOW_DATA_DIR.
    ``writer``: for the proxy, which appends and hardly reads (a small SQLite cache, no mmap)."""
    if config.mongo_uri:
        from llmflow_core.store.mongo import MongoStore

        return MongoStore(config.mongo_uri, retention_days=config.retention_days)
    from llmflow_core.store.sqlite import SQLiteStore

    if writer:
        return SQLiteStore(config.sqlite_path, cache_kib=4096, mmap_bytes=0)
    return SQLiteStore(config.sqlite_path)


__all__ = ["apply_retention", "BadCursor", "BucketRow", "Page", "SpanQuery", "SpanStore", "StoreError",
           "StoreStats", "open_store"]
