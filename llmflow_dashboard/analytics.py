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
from llmflow_core.store.base import Bucket, GroupTotal, percentile

DEFAULT_RANGE = timedelta(hours=24)
TOP = 10


def pick_bucket(since: datetime, until: datetime) -> Bucket:
    span = until - since
    if span <= timedelta(hours=3):
        return "minute"
    if span <= timedelta(days=3):
        return "hour"
    return "day"


def _top(groups: list[GroupTotal], limit: int = TOP) -> list[dict[str, Any]]:
    ranked = sorted((g for g in groups if g.name is not None), key=lambda g: (-g.cost, -g.requests))
    return [{"name": g.name, "cost": g.cost, "requests": g.requests, "tokens": g.tokens}
            for g in ranked[:limit]]


def build(store: SpanStore, query: SpanQuery, bucket: Bucket | None = None,
          now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(timezone.utc)
    since = query.since or (now - DEFAULT_RANGE)
    until = query.until or now
    # each call once: no workflow/task spans, no second record of a call seen by SDK and proxy
    query = replace(query, since=since, until=until, cursor=None, counted_only=True)
    bucket = bucket or pick_bucket(since, until)

    overview = store.overview(query, bucket=bucket)
    rows, latency, ttft = overview.series, overview.latency, overview.ttft

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
            "p50": rounded(percentile(latency.get(row.start, {}), 0.5)),
            "p95": rounded(percentile(latency.get(row.start, {}), 0.95)),
            "ttft_p50": rounded(percentile(ttft.get(row.start, {}), 0.5)),
            "ttft_p95": rounded(percentile(ttft.get(row.start, {}), 0.95)),
        })
    overall: dict[int, int] = defaultdict(int)
    for counts in latency.values():
        for index, count in counts.items():
            overall[index] += count
    by_model = _top(overview.groups["model"], limit=20)
    requests = sum(row.requests for row in rows)
    errors = sum(row.errors for row in rows)
    return {
        "bucket": bucket,
        "since": iso(since),
        "until": iso(until),
        "series": series,
        "cost_by_model": by_model,
        "top_users": _top(overview.groups["user_id"]),
        "top_features": _top(overview.groups["feature"]),
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
