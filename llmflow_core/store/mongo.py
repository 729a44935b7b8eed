"""MongoDB store (pymongo): one document per span, ``_id`` = span id (idempotent writes).

Dates are BSON dates, so range queries and the TTL index (RETENTION_DAYS) work natively.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator, Sequence

from pymongo import ASCENDING, DESCENDING, MongoClient
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, OperationFailure, PyMongoError

from llmflow_core.spans import Span
from llmflow_core.store.base import (
    BUCKET_SECONDS, GROUP_FIELDS, HISTOGRAM_BOUNDS, PAYLOAD_FIELDS, Bucket, BucketRow, HistogramField,
    HistogramRow, Page, SpanQuery, SpanStore, StoreError, StoreStats, decode_cursor, encode_cursor,
)

DUPLICATE_KEY = 11000
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
TTL_INDEX = "spans_ttl"
FIELD_PATHS = {"model": "attributes.model", "provider": "attributes.provider", "status": "status",
               "service": "service", "user_id": "attributes.user_id",
               "session_id": "attributes.session_id", "feature": "attributes.feature"}
HISTOGRAM_PATHS = {"duration": "$duration", "ttft": "$attributes.ttft_ms"}
# Where full-text search looks (MongoDB has no index here: a case-insensitive scan of these).
TEXT_PATHS = ("request.messages.content", "request.messages.content.text",
              "request.messages.parts.text", "response.output.text", "response.output.reasoning",
              "response.output.tool_calls.name", "error.message")


def database_name(uri: str, default: str = "llmflow") -> str:
    from pymongo.uri_parser import parse_uri

    try:
        return parse_uri(uri).get("database") or default
    except Exception:
        return default


def bucket_start(size_ms: int) -> dict[str, Any]:
    """$startTime rounded down to a bucket, in epoch ms (date - epoch = ms in MongoDB, and in
    mongomock)."""
    millis = {"$subtract": ["$startTime", EPOCH]}
    return {"$subtract": [millis, {"$mod": [millis, size_ms]}]}


def from_ms(millis: Any) -> datetime:
    return datetime.fromtimestamp(int(millis) / 1000, tz=timezone.utc)


def to_doc(span: Span) -> dict[str, Any]:
    doc = span.to_document()
    doc["_id"] = span.span_id
    return doc


def from_doc(doc: dict[str, Any]) -> Span:
    doc = dict(doc)
    doc.pop("_id", None)
    return Span.from_document(doc)


def mongo_filter(query: SpanQuery, *, with_cursor: bool = True) -> dict[str, Any]:
    clauses: list[dict[str, Any]] = []
    start: dict[str, Any] = {}
    if query.since is not None:
        start["$gte"] = query.since
    if query.until is not None:
        start["$lt"] = query.until
    if start:
        clauses.append({"startTime": start})
    if query.model is not None:
        clauses.append({"attributes.model": query.model})
    if query.provider is not None:
        clauses.append({"attributes.provider": query.provider})
    if query.service is not None:
        clauses.append({"service": query.service})
    if query.trace_id is not None:
        clauses.append({"traceId": query.trace_id})
    if query.status is not None:
        clauses.append({"status": query.status.value})
    tokens: dict[str, Any] = {}
    if query.min_tokens is not None:
        tokens["$gte"] = query.min_tokens
    if query.max_tokens is not None:
        tokens["$lte"] = query.max_tokens
    if tokens:
        clauses.append({"attributes.total_tokens": tokens})
    if query.min_cost is not None:
        clauses.append({"attributes.estimated_cost": {"$gte": query.min_cost}})
    for key, value in query.attributes.items():
        clauses.append({f"attributes.{key}": value})
    if query.text:
        pattern = re.compile(r"\s+".join(re.escape(word) for word in query.text.split()), re.IGNORECASE)
        clauses.append({"$or": [{path: pattern} for path in TEXT_PATHS]})
    if query.counted_only:
        clauses.append({"kind": {"$in": ["llm", "http"]}, "attributes.duplicate_of": {"$exists": False}})
    if with_cursor and query.cursor:
        millis, span_id = decode_cursor(query.cursor)
        moment = from_ms(millis)
        clauses.append({"$or": [{"startTime": {"$lt": moment}},
                                {"startTime": moment, "_id": {"$lt": span_id}}]})
    if not clauses:
        return {}
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


class MongoStore(SpanStore):
    name = "mongo"

    def __init__(self, uri: str | None = None, *, client: Any = None, database: str | None = None,
                 collection: str = "spans", retention_days: int = 0,
                 timeout_ms: int = 5000) -> None:
        if client is None:
            client = MongoClient(uri, serverSelectionTimeoutMS=timeout_ms, tz_aware=True,
                                 connectTimeoutMS=timeout_ms, socketTimeoutMS=timeout_ms * 6)
        self.client = client
        self.db = client[database or (database_name(uri) if uri else "llmflow")]
        self.spans: Collection = self.db[collection]
        self.retention_days = retention_days
        self._indexed = False

    def ensure_indexes(self) -> None:
        """Create the indexes the list, trace and chart queries use, and the TTL index."""
        if self._indexed:
            return
        try:
            self.spans.create_index([("startTime", DESCENDING), ("_id", DESCENDING)], name="spans_start")
            self.spans.create_index([("traceId", ASCENDING), ("startTime", ASCENDING)], name="spans_trace")
            for field in ("attributes.model", "attributes.provider", "status",
                          "attributes.user_id", "attributes.session_id", "attributes.feature"):
                self.spans.create_index([(field, ASCENDING), ("startTime", DESCENDING)],
                                        name=f"spans_{field.split('.')[-1]}")
            self._ensure_ttl()
        except PyMongoError as exc:
            raise StoreError(f"mongo: {exc}") from exc
        self._indexed = True

    def _ensure_ttl(self) -> None:
        """A TTL index on startTime for RETENTION_DAYS; changed in place when the setting changes."""
        existing = self.spans.index_information().get(TTL_INDEX)
        if not self.retention_days:
            if existing:
                self.spans.drop_index(TTL_INDEX)
            return
        seconds = int(timedelta(days=self.retention_days).total_seconds())
        if existing is None:
            self.spans.create_index([("startTime", ASCENDING)], name=TTL_INDEX,
                                    expireAfterSeconds=seconds)
        elif existing.get("expireAfterSeconds") != seconds:
            try:
                self.db.command("collMod", self.spans.name,
                                index={"name": TTL_INDEX, "expireAfterSeconds": seconds})
            except (OperationFailure, NotImplementedError, TypeError):  # TypeError: mongomock
                self.spans.drop_index(TTL_INDEX)
                self.spans.create_index([("startTime", ASCENDING)], name=TTL_INDEX,
                                        expireAfterSeconds=seconds)

    def write_batch(self, spans: Sequence[Span]) -> int:
        if not spans:
            return 0
        self.ensure_indexes()
        try:
            result = self.spans.insert_many([to_doc(span) for span in spans], ordered=False)
            return len(result.inserted_ids)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if all(err.get("code") == DUPLICATE_KEY for err in errors):
                return exc.details.get("nInserted", len(spans) - len(errors))
            raise StoreError(f"mongo: {errors[:1]}") from exc
        except PyMongoError as exc:
            raise StoreError(f"mongo: {exc}") from exc

    def _find(self, filter_: dict[str, Any], sort: list[tuple[str, int]],
              limit: int = 0) -> list[Span]:
        try:
            return [from_doc(doc) for doc in self.spans.find(filter_, sort=sort, limit=limit)]
        except PyMongoError as exc:
            raise StoreError(f"mongo: {exc}") from exc

    def get_span(self, span_id: str) -> Span | None:
        found = self._find({"_id": span_id}, [("_id", ASCENDING)], 1)
        return found[0] if found else None

    def get_trace(self, trace_id: str) -> list[Span]:
        return self._find({"traceId": trace_id}, [("startTime", ASCENDING), ("_id", ASCENDING)])

    def list_spans(self, query: SpanQuery) -> Page:
        spans = self._find(mongo_filter(query), [("startTime", DESCENDING), ("_id", DESCENDING)],
                           query.limit + 1)
        more = len(spans) > query.limit
        spans = spans[: query.limit]
        last = spans[-1] if more else None
        return Page(spans, encode_cursor(last.start_time, last.span_id) if last else None)

    def iter_spans(self, query: SpanQuery) -> Iterator[Span]:
        try:
            cursor = self.spans.find(mongo_filter(query, with_cursor=False),
                                     sort=[("startTime", DESCENDING), ("_id", DESCENDING)],
                                     batch_size=500)
            for doc in cursor:
                yield from_doc(doc)
        except PyMongoError as exc:
            raise StoreError(f"mongo: {exc}") from exc

    def aggregate(self, query: SpanQuery, *, bucket: Bucket = "hour",
                  group_by: str | None = None) -> list[BucketRow]:
        if group_by is not None and group_by not in GROUP_FIELDS:
            raise ValueError(f"cannot group by {group_by!r}")
        size = BUCKET_SECONDS[bucket] * 1000
        pipeline = [
            {"$match": mongo_filter(query, with_cursor=False)},
            {"$group": {
                "_id": {"b": bucket_start(size),
                        "g": "$" + FIELD_PATHS[group_by] if group_by else None},
                "requests": {"$sum": 1},
                "errors": {"$sum": {"$cond": [{"$eq": ["$status", "error"]}, 1, 0]}},
                "prompt": {"$sum": {"$ifNull": ["$attributes.prompt_tokens", 0]}},
                "completion": {"$sum": {"$ifNull": ["$attributes.completion_tokens", 0]}},
                "cost": {"$sum": {"$ifNull": ["$attributes.estimated_cost", 0]}},
                "duration": {"$avg": "$duration"},
                "ttft": {"$avg": "$attributes.ttft_ms"},
            }},
            {"$sort": {"_id.b": 1, "_id.g": 1}},
        ]
        rows = self._aggregate(pipeline)
        return [BucketRow(from_ms(r["_id"]["b"]),
                          r["_id"].get("g"), int(r["requests"]), int(r["errors"]),
                          int(r["prompt"]), int(r["completion"]), float(r["cost"]),
                          r.get("duration"), r.get("ttft")) for r in rows]

    def _aggregate(self, pipeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
        try:
            return list(self.spans.aggregate(pipeline))
        except PyMongoError as exc:
            raise StoreError(f"mongo: {exc}") from exc

    def histogram(self, query: SpanQuery, *, bucket: Bucket = "hour",
                  field: HistogramField = "duration") -> list[HistogramRow]:
        value = HISTOGRAM_PATHS[field]
        size = BUCKET_SECONDS[bucket] * 1000
        branches = [{"case": {"$lt": [value, bound]}, "then": index}
                    for index, bound in enumerate(HISTOGRAM_BOUNDS)]
        match = mongo_filter(query, with_cursor=False)
        present = {value[1:]: {"$type": "number"}}
        pipeline = [
            {"$match": {"$and": [match, present]} if match else present},
            {"$group": {"_id": {"b": bucket_start(size),
                                "h": {"$switch": {"branches": branches,
                                                  "default": len(HISTOGRAM_BOUNDS)}}},
                        "n": {"$sum": 1}}},
            {"$sort": {"_id.b": 1, "_id.h": 1}},
        ]
        rows = self._aggregate(pipeline)
        return [HistogramRow(from_ms(r["_id"]["b"]),
                             int(r["_id"]["h"]), int(r["n"])) for r in rows]

    def distinct(self, field: str, query: SpanQuery | None = None, limit: int = 200) -> list[str]:
        if field not in GROUP_FIELDS:
            raise ValueError(f"no distinct values for {field!r}")
        try:
            values = self.spans.distinct(FIELD_PATHS[field], mongo_filter(query or SpanQuery(),
                                                                          with_cursor=False))
        except PyMongoError as exc:
            raise StoreError(f"mongo: {exc}") from exc
        return sorted(v for v in values if isinstance(v, str))[:limit]

    def prune(self, before: datetime) -> int:
        try:
            return self.spans.delete_many({"startTime": {"$lt": before}}).deleted_count
        except PyMongoError as exc:
            raise StoreError(f"mongo: {exc}") from exc

    def prune_payloads(self, before: datetime) -> int:
        try:
            result = self.spans.update_many(
                {"startTime": {"$lt": before}, "attributes.payload_pruned": {"$exists": False}},
                {"$unset": {f"{a}.{b}": "" for a, b in PAYLOAD_FIELDS},
                 "$set": {"attributes.payload_pruned": True}})
        except PyMongoError as exc:
            raise StoreError(f"mongo: {exc}") from exc
        return result.modified_count

    def stats(self) -> StoreStats:
        try:
            count = self.spans.count_documents({})
            first = list(self.spans.find({}, {"startTime": 1}, sort=[("startTime", 1)], limit=1))
            last = list(self.spans.find({}, {"startTime": 1}, sort=[("startTime", -1)], limit=1))
            try:
                size = int(self.db.command({"collStats": self.spans.name}).get("storageSize", 0))
            except (OperationFailure, NotImplementedError, TypeError):
                size = None
        except PyMongoError as exc:
            raise StoreError(f"mongo: {exc}") from exc
        oldest = first[0]["startTime"] if first else None
        newest = last[0]["startTime"] if last else None
        return StoreStats(count, oldest, newest, size, {"database": self.db.name})

    def ping(self) -> None:
        try:
            self.client.admin.command("ping")
        except PyMongoError as exc:
            raise StoreError(f"mongo: {exc}") from exc
        except NotImplementedError:  # mongomock without admin commands
            pass

    def close(self) -> None:
        self.client.close()
