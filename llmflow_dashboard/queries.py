"""Request parameters -> SpanQuery: the one parser behind the pages, the API and the exports.

Filters live in the URL (bookmarkable, shareable). Times accept ISO-8601 or a relative span
back from now: ``15m``, ``1h``, ``24h``, ``7d``.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Mapping

from llmflow_core.spans import SpanStatus
from llmflow_core.store import SpanQuery

_RELATIVE = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
TIME_PRESETS = (("15m", "15 min"), ("1h", "1 hour"), ("24h", "24 hours"), ("7d", "7 days"),
                ("30d", "30 days"))
FILTER_KEYS = ("range", "since", "until", "model", "provider", "status", "service", "trace_id",
               "min_tokens", "max_tokens", "min_cost", "q", "user_id", "session_id", "feature", "attr")
NAMED_ATTRIBUTES = ("user_id", "session_id", "feature")


class QueryError(ValueError):
    """A filter value that cannot be used; the message says which and why."""


def parse_when(value: str, now: datetime | None = None) -> datetime:
    value = value.strip()
    match = _RELATIVE.match(value)
    if match:
        amount, unit = match.groups()
        return (now or datetime.now(timezone.utc)) - timedelta(**{_UNITS[unit]: int(amount)})
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(f"not a time: {value!r} (use ISO-8601 or 15m, 1h, 24h, 7d)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _number(params: Mapping[str, str], key: str, kind: type) -> int | float | None:
    raw = params.get(key, "").strip()
    if not raw:
        return None
    try:
        return kind(raw)
    except ValueError:
        raise QueryError(f"{key} must be a number, not {raw!r}") from None


def attribute_filters(params: Mapping[str, str]) -> dict[str, str]:
    """user_id/session_id/feature parameters, and ``attr=name:value`` (repeatable) for any other
    attribute; a custom X-Trace-<Name> header is ``attr=custom.<name>:value``."""
    found = {key: params[key].strip() for key in NAMED_ATTRIBUTES if params.get(key, "").strip()}
    values = params.getlist("attr") if hasattr(params, "getlist") else [params.get("attr", "")]
    for item in values:
        if not item.strip():
            continue
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise QueryError(f"attr must look like name:value, not {item!r}")
        found[name.strip()] = value.strip()
    return found


def query_from_params(params: Mapping[str, str], *, default_limit: int = 50,
                      max_limit: int = 1000) -> SpanQuery:
    def text(key: str) -> str | None:
        value = params.get(key, "").strip()
        return value or None

    status = text("status")
    if status is not None and status not in {s.value for s in SpanStatus}:
        raise QueryError(f"status must be one of success, error, cancelled, not {status!r}")
    limit = _number(params, "limit", int) or default_limit
    if not 1 <= limit <= max_limit:
        raise QueryError(f"limit must be between 1 and {max_limit}")
    since, until = text("since"), text("until")
    if since is None and text("range"):  # a preset: the last 15m, 1h, 24h...
        since = text("range")
        if not _RELATIVE.match(since):
            raise QueryError(f"range must look like 15m, 1h, 24h or 7d, not {since!r}")
    return SpanQuery(
        since=parse_when(since) if since else None,
        until=parse_when(until) if until else None,
        model=text("model"),
        provider=text("provider"),
        status=SpanStatus(status) if status else None,
        service=text("service"),
        trace_id=text("trace_id"),
        min_tokens=_number(params, "min_tokens", int),
        max_tokens=_number(params, "max_tokens", int),
        min_cost=_number(params, "min_cost", float),
        text=text("q"),
        attributes=_checked_attributes(params),
        limit=limit,
        cursor=text("cursor"),
    )


def _checked_attributes(params: Mapping[str, str]) -> dict[str, str]:
    from llmflow_core.store.base import ATTRIBUTE_KEY_RE

    found = attribute_filters(params)
    for key in found:
        if not ATTRIBUTE_KEY_RE.match(key):
            raise QueryError(f"cannot filter on attribute {key!r} (letters, digits, _ and -; "
                             f"custom.<name> for X-Trace-<Name> headers)")
    return found


def filter_params(params: Mapping[str, str]) -> list[tuple[str, str]]:
    """The filters present in a request, as pairs (``attr`` may repeat), to carry into links
    (paging, exports, charts) with urlencode."""
    pairs: list[tuple[str, str]] = []
    for key in FILTER_KEYS:
        values = params.getlist(key) if hasattr(params, "getlist") else [params.get(key, "")]
        pairs.extend((key, value) for value in values if value)
    return pairs
