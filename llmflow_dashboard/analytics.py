"""Chart data for the analytics page, built from the store contract's aggregates.

One function, ``build``, turns a filtered query into the JSON the charts draw: per time bucket
requests, errors and error rate, tokens in/out, cost, latency p50/p95 and TTFT p50/p95; cost by
model; top users and features by cost; totals.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

from llmflow_core.spans import iso
from llmflow_core.store import SpanQuery, SpanStore
from llmflow_core.store.base import Bucket, percentile

DEFAULT_RANGE = timedelta(hours=24)
TOP = 10


def pick_bucket(since: datetime, until: datetime) -> Bucket:
    span = until - since
    if span <= timedelta(hours=3):
        return "minute"
    if span <= timedelta(days=3):
        return "hour"
    return "day"


def _top(rows, limit: int = TOP) -> list[dict[str, Any]]:
    totals: dict[str | None, dict[str, float]] = defaultdict(lambda: {"cost": 0.0, "requests": 0,
                                                                     "tokens": 0})
    for row in rows:
        entry = totals[row.group]
        entry["cost"] += row.cost
        entry["requests"] += row.requests
        entry["tokens"] += row.prompt_tokens + row.completion_tokens
    ranked = sorted(((k, v) for k, v in totals.items() if k is not None),
                    key=lambda item: (-item[1]["cost"], -item[1]["requests"]))
    return [{"name": name, **values} for name, values in ranked[:limit]]


def build(store: SpanStore, query: SpanQuery, bucket: Bucket | None = None,
          now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(timezone.utc)
    since = query.since or (now - DEFAULT_RANGE)
    until = query.until or now
    # each call once: no workflow/task spans, no second record of a call seen by SDK and proxy
    query = replace(query, since=since, until=until, cursor=None, counted_only=True)
    bucket = bucket or pick_bucket(since, until)

    rows = store.aggregate(query, bucket=bucket)
    latency: dict[datetime, dict[int, int]] = defaultdict(dict)
    for row in store.histogram(query, bucket=bucket, field="duration"):
        latency[row.start][row.bin] = row.count
    ttft: dict[datetime, dict[int, int]] = defaultdict(dict)
    for row in store.histogram(query, bucket=bucket, field="ttft"):
        ttft[row.start][row.bin] = row.count

    def rounded(value: float | None, digits: int = 1) -> float | None:
        return None if value is None else round(value, digits)

    series = []
    for row in rows:
        series.append({
            "t": iso(row.start),
            "requests": row.requests,
            "errors": row.errors,
            "error_rate": round(row.errors / row.requests, 4) if row.requests else 0.0,
            "prompt_tokens": row.prompt_tokens,
            "completion_tokens": row.completion_tokens,
            "cost": round(row.cost, 6),
            "avg_latency": rounded(row.avg_duration),
            "p50": rounded(percentile(latency[row.start], 0.5)),
            "p95": rounded(percentile(latency[row.start], 0.95)),
            "ttft_p50": rounded(percentile(ttft[row.start], 0.5)),
            "ttft_p95": rounded(percentile(ttft[row.start], 0.95)),
        })
    overall: dict[int, int] = defaultdict(int)
    for counts in latency.values():
        for index, count in counts.items():
            overall[index] += count
    by_model = _top(store.aggregate(query, bucket="day", group_by="model"), limit=20)
    requests = sum(row.requests for row in rows)
    errors = sum(row.errors for row in rows)
    return {
        "bucket": bucket,
        "since": iso(since),
        "until": iso(until),
        "series": series,
        "cost_by_model": by_model,
        "top_users": _top(store.aggregate(query, bucket="day", group_by="user_id")),
        "top_features": _top(store.aggregate(query, bucket="day", group_by="feature")),
        "totals": {
            "requests": requests,
            "errors": errors,
            "error_rate": round(errors / requests, 4) if requests else 0.0,
            "prompt_tokens": sum(row.prompt_tokens for row in rows),
            "completion_tokens": sum(row.completion_tokens for row in rows),
            "cost": round(sum(row.cost for row in rows), 6),
            "p50": rounded(percentile(overall, 0.5)),
            "p95": rounded(percentile(overall, 0.95)),
        },
    }
