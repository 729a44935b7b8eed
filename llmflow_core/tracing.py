"""Trace context from request headers: X-Trace-*, W3C traceparent and Helicone's aliases.

``is_trace_header`` runs in the proxy hook (the headers are taken off before the call goes
upstream); ``trace_context`` runs later, on the writer thread, to turn them into ids and
attributes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Iterable

from llmflow_core.spans import new_span_id, new_trace_id

_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")
_HEX16 = re.compile(r"^[0-9a-fA-F]{16}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")

# Header (lower case) -> span attribute.
NAMED_HEADERS = {
    "x-trace-user-id": "user_id",
    "x-trace-session-id": "session_id",
    "x-trace-feature": "feature",
    "x-trace-step": "step",
    "helicone-user-id": "user_id",
    "helicone-session-id": "session_id",
}
CUSTOM_PREFIXES = ("x-trace-", "helicone-property-")
ID_HEADERS = {"x-trace-id", "x-parent-span-id", "traceparent", "x-trace-service"}


def is_trace_header(name: str) -> bool:
    """True for headers LLMFlow consumes and removes before forwarding."""
    lowered = name.lower()
    return (lowered.startswith(CUSTOM_PREFIXES) or lowered in ID_HEADERS
            or lowered in NAMED_HEADERS)


@dataclass
class TraceContext:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    service: str | None
    attributes: dict[str, object] = field(default_factory=dict)


def normalise_trace_id(value: str) -> tuple[str, str | None]:
    """(32-hex trace id, the original value when it had to be hashed)."""
    value = value.strip()
    if _HEX32.match(value):
        return value.lower(), None
    if _UUID.match(value):
        return value.replace("-", "").lower(), None
    return hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()[:32], value


def parse_traceparent(value: str) -> tuple[str, str] | None:
    match = _TRACEPARENT.match(value.strip().lower())
    if not match:
        return None
    version, trace_id, parent_id, _flags = match.groups()
    if version == "ff" or trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return trace_id, parent_id


def trace_context(headers: Iterable[tuple[str, str]]) -> TraceContext:
    trace_id: str | None = None
    parent: str | None = None
    service: str | None = None
    attributes: dict[str, object] = {}
    custom: dict[str, str] = {}
    traceparent: tuple[str, str] | None = None
    for name, value in headers:
        key = name.lower()
        if key == "traceparent":
            traceparent = parse_traceparent(value)
        elif key == "x-trace-id":
            trace_id, original = normalise_trace_id(value)
            if original is not None:
                attributes["trace_key"] = original
        elif key == "x-parent-span-id":
            if _HEX16.match(value.strip()):
                parent = value.strip().lower()
        elif key == "x-trace-service":
            service = value.strip() or None
        elif key in NAMED_HEADERS:
            attributes[NAMED_HEADERS[key]] = value
        else:
            for prefix in CUSTOM_PREFIXES:
                if key.startswith(prefix) and len(key) > len(prefix):
                    custom[key[len(prefix):]] = value
    if traceparent is not None and trace_id is None:
        trace_id, parent = traceparent[0], parent or traceparent[1]
    elif traceparent is not None and traceparent[0] == trace_id and parent is None:
        parent = traceparent[1]
    if custom:
        attributes["custom"] = custom
    return TraceContext(trace_id or new_trace_id(), new_span_id(), parent, service, attributes)
