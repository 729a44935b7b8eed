"""The storage contract: what every span store does, and the query object it takes.

Two implementations (``sqlite.SQLiteStore``, ``mongo.MongoStore``) pass one shared contract
test suite (tests/store/test_contract.py). Views, the API and the proxy's writer only ever talk
to this interface.
"""

from __future__ import annotations

import abc
import base64
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterator, Literal, Mapping, Sequence

from llmflow_core.spans import Span, SpanStatus, parse_time

Bucket = Literal["minute", "hour", "day"]
BUCKET_SECONDS: dict[str, int] = {"minute": 60, "hour": 3600, "day": 86400}
GROUP_FIELDS = ("model", "provider", "status", "service")


class StoreError(RuntimeError):
    """The store could not do what was asked (unreachable, locked, full...)."""


class BadCursor(ValueError):
    pass


@dataclass(frozen=True, kw_only=True)
class SpanQuery:
    """Filters for listing and aggregating spans. Every field is optional."""

    since: datetime | None = None  # startTime >= since
    until: datetime | None = None  # startTime < until
    model: str | None = None
    provider: str | None = None
    status: SpanStatus | None = None
    service: str | None = None
    trace_id: str | None = None
    min_tokens: int | None = None  # total_tokens >= min_tokens
    max_tokens: int | None = None  # total_tokens <= max_tokens
    min_cost: float | None = None
    limit: int = 50
    cursor: str | None = None  # from Page.next: continue after that span

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= 1000:
            raise ValueError("limit must be between 1 and 1000")
        if self.status is not None:
            object.__setattr__(self, "status", SpanStatus(self.status))
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, parse_time(value))


@dataclass(frozen=True)
class Page:
    spans: list[Span]
    next: str | None  # cursor for the following (older) page, None at the end


@dataclass(frozen=True)
class BucketRow:
    """One point of a chart: totals of the spans that started in [start, start + bucket)."""

    start: datetime
    group: str | None
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cost: float
    avg_duration: float | None


@dataclass(frozen=True)
class StoreStats:
    spans: int
    oldest: datetime | None
    newest: datetime | None
    size_bytes: int | None
    extra: Mapping[str, Any] = field(default_factory=dict)


def encode_cursor(start: datetime, span_id: str) -> str:
    millis = int(start.timestamp() * 1000)
    return base64.urlsafe_b64encode(f"{millis}:{span_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """(start in epoch milliseconds, span id)."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        millis, span_id = base64.urlsafe_b64decode(padded).decode().split(":", 1)
        return int(millis), span_id
    except (ValueError, UnicodeDecodeError):
        raise BadCursor(f"not a cursor: {cursor!r}") from None


class SpanStore(abc.ABC):
    """A place spans are kept. Thread-safe: one instance may serve several threads."""

    name: str = "store"

    @abc.abstractmethod
    def write_batch(self, spans: Sequence[Span]) -> int:
        """Store spans; a span id already stored is left as it is (idempotent).

        Returns how many spans were new. Raises StoreError when nothing could be written."""

    @abc.abstractmethod
    def get_span(self, span_id: str) -> Span | None: ...

    @abc.abstractmethod
    def get_trace(self, trace_id: str) -> list[Span]:
        """Every span of a trace, oldest first."""

    @abc.abstractmethod
    def list_spans(self, query: SpanQuery) -> Page:
        """Spans matching the query, newest first, one page at a time."""

    @abc.abstractmethod
    def iter_spans(self, query: SpanQuery) -> Iterator[Span]:
        """Every span matching the query (limit ignored), newest first, without holding them all."""

    @abc.abstractmethod
    def aggregate(self, query: SpanQuery, *, bucket: Bucket = "hour",
                  group_by: str | None = None) -> list[BucketRow]:
        """Chart data: totals per time bucket (and per group), oldest bucket first."""

    @abc.abstractmethod
    def prune(self, before: datetime) -> int:
        """Delete spans that started before ``before``; returns how many went."""

    @abc.abstractmethod
    def stats(self) -> StoreStats: ...

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise StoreError unless the store answers."""

    def close(self) -> None:  # pragma: no cover - trivial default
        pass
