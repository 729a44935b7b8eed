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


def open_store(config: Config) -> SpanStore:
    """MongoDB when MONGO_URI is set, else the embedded SQLite file in LLMFLOW_DATA_DIR."""
    if config.mongo_uri:
        from llmflow_core.store.mongo import MongoStore

        return MongoStore(config.mongo_uri, retention_days=config.retention_days)
    from llmflow_core.store.sqlite import SQLiteStore

    return SQLiteStore(config.sqlite_path)


__all__ = ["apply_retention", "BadCursor", "BucketRow", "Page", "SpanQuery", "SpanStore", "StoreError",
           "StoreStats", "open_store"]
