"""The storage contract: what every span store does, and the query object it takes.

Two implementations (``sqlite.SQLiteStore``, ``mongo.MongoStore``) pass one shared contract
test suite (tests/store/test_contract.py). Views, the API and the proxy's writer only ever talk
to this interface.
"""

from __future__ import annotations

import abc
import base64
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterator, Literal, Mapping, Sequence

from llmflow_core.spans import Span, SpanStatus, parse_time

Bucket = Literal["minute", "hour", "day"]
BUCKET_SECONDS: dict[str, int] = {"minute": 60, "hour": 3600, "day": 86400}
# Fields charts can be split by and filter lists offered for (each store indexes them).
GROUP_FIELDS = ("model", "provider", "status", "service", "user_id", "session_id", "feature")
# Attributes every store can filter on exactly; ``custom.<name>`` reaches X-Trace-<Name> values.
ATTRIBUTE_KEY_RE = re.compile(r"^(custom\.)?[a-z0-9_][a-z0-9_-]{0,63}$")
# Upper bounds (ms) of the latency histogram bins; percentiles are read off them (about ±25%).
HISTOGRAM_BOUNDS: tuple[float, ...] = (
    1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 400, 500, 750, 1000, 1500, 2000, 3000, 4000,
    5000, 7500, 10000, 15000, 20000, 30000, 45000, 60000, 120000, 300000)
HistogramField = Literal["duration", "ttft"]


# What prune_payloads removes: the heavy, sensitive parts of a span.
PAYLOAD_FIELDS = (("request", "body"), ("request", "messages"), ("response", "body"),
                  ("response", "output"))


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
    text: str | None = None  # full-text search in prompts, answers, tool calls and errors
    # Totals: only LLM/HTTP calls (no workflow/task spans), and each call once (no duplicate_of).
    counted_only: bool = False
    attributes: Mapping[str, str] = field(default_factory=dict)  # exact attribute values
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
        for key in self.attributes:
            if not ATTRIBUTE_KEY_RE.match(key):
                raise ValueError(f"not an attribute name LLMFlow can filter on: {key!r}")
        if self.text is not None and not self.text.strip():
            object.__setattr__(self, "text", None)


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
    avg_ttft: float | None = None


@dataclass(frozen=True)
class HistogramRow:
    """How many spans of a time bucket fell into latency bin ``bin`` (see HISTOGRAM_BOUNDS)."""

    start: datetime
    bin: int
    count: int


def percentile(counts: Mapping[int, int], fraction: float) -> float | None:
    """The value below which ``fraction`` of the histogram lies, interpolated inside its bin."""
    total = sum(counts.values())
    if not total:
        return None
    target = fraction * total
    seen = 0
    for index in sorted(counts):
        count = counts[index]
        if seen + count >= target:
            low = HISTOGRAM_BOUNDS[index - 1] if index > 0 else 0.0
            high = HISTOGRAM_BOUNDS[index] if index < len(HISTOGRAM_BOUNDS) else low * 2
            return low + (high - low) * ((target - seen) / count)
        seen += count
    return float(HISTOGRAM_BOUNDS[-1])


@dataclass(frozen=True)
class GroupTotal:
    name: str | None
    requests: int
    cost: float
    tokens: int


@dataclass(frozen=True)
class Overview:
    """Everything the analytics page draws, for one query: totals per time bucket, latency and
    TTFT histograms per bucket, and totals per model, user and feature."""

    series: list[BucketRow]
    latency: dict[datetime, dict[int, int]]
    ttft: dict[datetime, dict[int, int]]
    groups: dict[str, list[GroupTotal]]


OVERVIEW_GROUPS = ("model", "user_id", "feature")


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
    def histogram(self, query: SpanQuery, *, bucket: Bucket = "hour",
                  field: HistogramField = "duration") -> list[HistogramRow]:
        """Latency (or time-to-first-token) histogram per time bucket, for percentiles."""

    def overview(self, query: SpanQuery, *, bucket: Bucket = "hour") -> Overview:
        """The analytics page's data. This composition is the reference; a store may answer it
        in fewer passes over its data (SQLite does) as long as the result is the same."""
        latency: dict[datetime, dict[int, int]] = {}
        for row in self.histogram(query, bucket=bucket, field="duration"):
            latency.setdefault(row.start, {})[row.bin] = row.count
        ttft: dict[datetime, dict[int, int]] = {}
        for row in self.histogram(query, bucket=bucket, field="ttft"):
            ttft.setdefault(row.start, {})[row.bin] = row.count
        groups = {}
        for field_name in OVERVIEW_GROUPS:
            totals: dict[str | None, list[float]] = {}
            for row in self.aggregate(query, bucket="day", group_by=field_name):
                entry = totals.setdefault(row.group, [0, 0.0, 0])
                entry[0] += row.requests
                entry[1] += row.cost
                entry[2] += row.prompt_tokens + row.completion_tokens
            groups[field_name] = sorted((GroupTotal(name, int(n), cost, int(tokens))
                                         for name, (n, cost, tokens) in totals.items()),
                                        key=lambda g: (g.name is None, g.name or ""))
        return Overview(self.aggregate(query, bucket=bucket), latency, ttft, groups)

    @abc.abstractmethod
    def distinct(self, field: str, query: SpanQuery | None = None, limit: int = 200) -> list[str]:
        """Values of a GROUP_FIELDS field among matching spans (for filter suggestions)."""

    @abc.abstractmethod
    def prune(self, before: datetime) -> int:
        """Delete spans that started before ``before``; returns how many went."""

    @abc.abstractmethod
    def prune_payloads(self, before: datetime) -> int:
        """Drop prompts and responses (bodies, messages, output) of spans that started before
        ``before``, keeping every attribute (counts and costs stay for the charts). Marks them
        ``attributes.payload_pruned``; returns how many spans changed."""

    @abc.abstractmethod
    def stats(self) -> StoreStats: ...

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise StoreError unless the store answers."""

    def close(self) -> None:  # pragma: no cover - trivial default
        pass
