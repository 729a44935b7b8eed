"""Secrets out and bodies capped, before a span exists. The one place the rules live."""

from __future__ import annotations

import math
import re
from typing import Any, Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "[redacted]"

# Request/response headers whose values are credentials. Matched case-insensitively.
SECRET_HEADERS = frozenset({
    "authorization", "proxy-authorization", "x-api-key", "api-key", "x-goog-api-key",
    "cookie", "set-cookie", "openai-organization", "openai-project", "x-llmflow-key",
    "anthropic-admin-key", "x-auth-token",
})
# Any header whose name contains one of these words is treated as secret too.
_SECRET_WORDS = re.compile(r"(api[-_]?key|secret|token|password|auth)", re.IGNORECASE)
# Query parameters that carry credentials (Gemini takes ?key=).
SECRET_QUERY_PARAMS = frozenset({"key", "api_key", "apikey", "access_token", "token", "auth"})
# Credential-looking strings inside bodies or error messages (a provider echoing the key back).
_KEY_PATTERNS = re.compile(
    r"(sk-[A-Za-z0-9_\-]{8,}|sk-ant-[A-Za-z0-9_\-]{8,}|AIza[0-9A-Za-z_\-]{20,}|"
    r"gsk_[A-Za-z0-9]{16,}|Bearer\s+[A-Za-z0-9._\-]{8,})"
)


def is_secret_header(name: str) -> bool:
    lowered = name.lower()
    return lowered in SECRET_HEADERS or bool(_SECRET_WORDS.search(lowered))


def redact_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Headers as a dict (lower-case names; repeated names joined by ', '), secrets replaced."""
    result: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        shown = REDACTED if is_secret_header(key) else value
        result[key] = f"{result[key]}, {shown}" if key in result else shown
    return result


def redact_url(url: str) -> str:
    url = storable_text(url)  # urlencode cannot encode lone surrogates (non-UTF-8 path bytes)
    try:
        parts = urlsplit(url)
    except ValueError:  # "//[x": an unclosed IPv6 bracket (tests/fuzz). Keep no query, no user.
        return re.sub(r"//[^/?#]*@", "//", url.split("?", 1)[0].split("#", 1)[0])
    netloc = parts.netloc.rsplit("@", 1)[-1]  # never keep user:password@
    if not parts.query:  # (user:password@ was kept when there was no query: tests/fuzz)
        return url if netloc == parts.netloc else urlunsplit(parts._replace(netloc=netloc))
    pairs = [(k, REDACTED if k.lower() in SECRET_QUERY_PARAMS else v)
             for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(pairs, safe="[]")))


def redact_text(text: str) -> str:
    """Key-shaped strings inside free text (error messages, echoed bodies) replaced."""
    return _KEY_PATTERNS.sub(REDACTED, text)


def cap(data: bytes, limit: int) -> tuple[bytes, bool]:
    """The first ``limit`` bytes and whether anything was cut (limit 0 means no cap)."""
    if limit and len(data) > limit:
        return data[:limit], True
    return data, False


TRUNCATED = "…[truncated by LLMFlow]"
# Deeper JSON is cut here: every reader of a stored span (stores, exports, the dashboard)
# recurses per level, and a body nested ~1000 deep passes json.loads yet fails them later.
MAX_DEPTH = 64
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_SURROGATES = re.compile("[\ud800-\udfff]")


def storable_text(text: str) -> str:
    """``text`` without lone surrogates, which no UTF-8 encoder (SQLite, BSON, the spool)
    accepts: they come from JSON ``\\udXXX`` escapes and from mitmproxy's surrogateescape'd
    non-UTF-8 header and path bytes. Found by tests/fuzz: one such string failed a whole batch."""
    return text if text.isascii() else _SURROGATES.sub("\ufffd", text)


def fit(value: Any, budget: int, max_depth: int = MAX_DEPTH) -> tuple[Any, bool]:
    """``value`` with long strings shortened and long lists cut so that its JSON form is about
    ``budget`` characters at most; and whether anything was cut. A budget of 0 means no cap.

    Whatever the budget, the result is something every store can hold (the fuzz suite found
    each of these failing a write): no lone surrogates, no NaN/Infinity (not JSON: SQLite's
    json functions reject the document) and no integer beyond 64 bits (SQLite, BSON) -- those
    become their text --, no NUL in keys (BSON), and nothing nested deeper than ``max_depth``."""
    remaining = budget
    cut = False

    def walk(item: Any, depth: int) -> Any:
        nonlocal remaining, cut
        if isinstance(item, str):
            item = storable_text(item)
            if budget and len(item) > remaining:
                cut = True
                item = item[:max(remaining, 0)] + TRUNCATED
            remaining -= len(item) + 2
            return item
        if isinstance(item, (dict, list, tuple)) and depth >= max_depth:
            cut = True
            return f"[nested deeper than {max_depth} levels {TRUNCATED}]"
        if isinstance(item, dict):
            out = {}
            for key, child in item.items():
                if budget and remaining <= 0:
                    cut = True
                    out["…"] = TRUNCATED
                    break
                if isinstance(key, str):
                    key = storable_text(key).replace("\x00", "\ufffd")
                remaining -= len(str(key)) + 4
                out[key] = walk(child, depth + 1)
            return out
        if isinstance(item, (list, tuple)):
            out_list = []
            for index, child in enumerate(item):
                if budget and remaining <= 0:
                    cut = True
                    out_list.append(f"[{len(item) - index} more items {TRUNCATED}]")
                    break
                out_list.append(walk(child, depth + 1))
            return out_list
        remaining -= 8
        if isinstance(item, float) and not math.isfinite(item):
            return str(item)
        if isinstance(item, int) and not isinstance(item, bool) and not INT64_MIN <= item <= INT64_MAX:
            return str(item)
        return item

    return walk(value, 0), cut


def storable(value: Any) -> Any:
    """``value`` made storable (see ``fit``), without a size cap. A span's request/response
    dicts hold bodies already fitted one level down: the depth limit leaves them room."""
    return fit(value, 0, MAX_DEPTH + 8)[0]
