"""Span stores behind one contract; ``open_store`` picks one from the configuration."""

from __future__ import annotations

from llmflow_core.config import Config
from llmflow_core.store.base import (
    BadCursor, BucketRow, Page, SpanQuery, SpanStore, StoreError, StoreStats,
)


def open_store(config: Config) -> SpanStore:
    """MongoDB when MONGO_URI is set, else the embedded SQLite file in LLMFLOW_DATA_DIR."""
    if config.mongo_uri:
        from llmflow_core.store.mongo import MongoStore

        return MongoStore(config.mongo_uri, retention_days=config.retention_days)
    from llmflow_core.store.sqlite import SQLiteStore

    return SQLiteStore(config.sqlite_path)


__all__ = ["BadCursor", "BucketRow", "Page", "SpanQuery", "SpanStore", "StoreError",
           "StoreStats", "open_store"]
