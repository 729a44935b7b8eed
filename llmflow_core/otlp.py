"""OTLP traces in and out: OpenLLMetry / OpenTelemetry spans <-> LLMFlow spans.

In: ``parse_request`` (and ``decode_request``) turn an OTLP/HTTP ``ExportTraceServiceRequest``
body, protobuf or OTLP/JSON, into ``Span``s (``source=otlp``). Both generations of OpenLLMetry
attribute names are read into the same fields the proxy fills, so an ingested LLM span has the
provider, model, messages, tokens and cost a proxied one has:

- current: ``gen_ai.provider.name``, ``gen_ai.input.messages`` / ``gen_ai.output.messages``
  (JSON, parts), ``gen_ai.usage.input_tokens`` / ``output_tokens``,
  ``gen_ai.usage.cache_read.input_tokens``, ``gen_ai.response.finish_reasons``...
- legacy: ``gen_ai.system``, ``llm.request.type``, ``llm.usage.total_tokens``,
  ``gen_ai.usage.prompt_tokens`` / ``completion_tokens``, indexed ``gen_ai.prompt.N.*`` and
  ``gen_ai.completion.N.*`` (with ``tool_calls.M.*``), ``llm.request.functions.N.*``...

Anthropic's input token count INCLUDES the prompt cache in both generations of OpenLLMetry,
while LLMFlow (like Anthropic's API) keeps ``prompt_tokens`` without it: the cache is taken
out before pricing, so an ingested Anthropic call costs what the proxied one costs.

Every span keeps the sender's raw OTLP data under ``attributes["otel"]``: ``attributes`` (the
span's attributes, credential-shaped strings redacted), ``resource``, ``scope``, ``span_kind``,
``events``, ``links``, ``status``, ``trace_state`` (empty parts left out).

Out: ``encode_json`` gives an OTLP/JSON ``ExportTraceServiceRequest`` for any stored spans, with
the current ``gen_ai.*`` names for other tools plus LLMFlow's own namespaced attributes so
nothing is lost: ``llmflow.<attribute>`` for each LLMFlow attribute (so time to first token is
``llmflow.ttft_ms``, in milliseconds) and ``llmflow.span.*`` for the span's own fields. A span
carrying ``llmflow.span.source`` is read back from those alone, so ``decode(encode(s)) == s``.
An app may also send any ``llmflow.<attribute>`` itself (e.g. ``llmflow.ttft_ms``): it wins
over what the mapping derived.

Duplicate coverage: an app instrumented with the Traceloop SDK that calls its provider through
the proxy records the same call twice, the SDK's ``openai.chat`` span and, under it (the proxy
honours ``traceparent``), the proxy's span. ``same_call`` is the rule; ``mark_duplicates`` sets
``attributes["duplicate_of"]`` on the record that is stored second (stores are write-once);
``duplicate_pairs`` and ``counted`` give the presentation and the totals, whatever the order.

Imports neither Django nor mitmproxy. The protobuf classes (``opentelemetry-proto``) are only
loaded to decode, or to encode protobuf, so the encoder works without them.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Collection, Iterable, Mapping, Sequence

from llmflow_core import pricing
from llmflow_core.providers.base import Usage, as_list, loads
from llmflow_core.providers.openai import parse_arguments
from llmflow_core.redact import REDACTED, is_secret_header, redact_text, storable
from llmflow_core.spans import ATTRIBUTES, Span, SpanSource, SpanStatus

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
INT64_MAX = 2**63 - 1  # stores (BSON) keep signed 64-bit integers; OTLP times are unsigned
PROTOBUF = "protobuf"
JSON = "json"
MEDIA_TYPES = {
    "application/x-protobuf": PROTOBUF,
    "application/protobuf": PROTOBUF,
    "application/json": JSON,
}
CONTENT_TYPES = {PROTOBUF: "application/x-protobuf", JSON: "application/json"}

# The attribute LLMFlow uses for time to first token: no OpenTelemetry convention exists.
TTFT_ATTRIBUTE = "llmflow.ttft_ms"
LLMFLOW_PREFIX = "llmflow."
SPAN_PREFIX = "llmflow.span."  # the span's own fields in an LLMFlow export
# Attributes this module adds to the ones spans.ATTRIBUTES names.
OTLP_ATTRIBUTES = {
    "otel": "the raw OTLP data of an ingested span: attributes, resource, scope, span_kind, "
            "events, links, status, trace_state",
    "duplicate_of": "id of the span that recorded the same LLM call first (SDK span and proxy "
                    "span of one call): this one is not counted again in totals",
}

SPAN_KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer",
              5: "consumer"}
SPAN_KIND_NUMBERS = {name: number for number, name in SPAN_KINDS.items()}
STATUS_CODES = {0: "unset", 1: "ok", 2: "error"}
STATUS_VALUES = frozenset(status.value for status in SpanStatus)
SOURCE_VALUES = frozenset(source.value for source in SpanSource)
TRACELOOP_KINDS = ("workflow", "task", "agent", "tool")
ASSOCIATION_PREFIX = "traceloop.association.properties."
NAMED_ASSOCIATIONS = ("user_id", "session_id", "feature", "step")

# gen_ai.provider.name (current) and gen_ai.system (legacy) -> LLMFlow's provider/route names.
PROVIDERS = {
    "openai": "openai", "azure": "azure", "azure.ai.openai": "azure", "az.ai.openai": "azure",
    "azure.ai.inference": "azure", "az.ai.inference": "azure",
    "anthropic": "anthropic",
    "gcp.gemini": "gemini", "gcp.vertex_ai": "gemini", "gcp.gen_ai": "gemini", "google": "gemini",
    "gemini": "gemini", "vertex_ai": "gemini", "vertexai": "gemini",
    "ollama": "ollama", "groq": "groq",
    "mistral_ai": "mistral", "mistralai": "mistral", "mistral": "mistral",
    "deepseek": "deepseek", "openrouter": "openrouter",
    "together": "together", "togetherai": "together", "together_ai": "together",
    "cohere": "cohere", "aws.bedrock": "bedrock", "aws": "bedrock", "bedrock": "bedrock",
    "ibm.watsonx.ai": "watsonx", "watsonx": "watsonx", "x_ai": "xai", "xai": "xai",
    "perplexity": "perplexity", "fireworks": "fireworks", "huggingface": "huggingface",
}
# LLMFlow provider -> gen_ai.provider.name, for the export.
GEN_AI_PROVIDERS = {"gemini": "gcp.gemini", "mistral": "mistral_ai", "azure": "azure.ai.openai",
                    "bedrock": "aws.bedrock", "watsonx": "ibm.watsonx.ai", "xai": "x_ai"}
# gen_ai.operation.name / llm.request.type -> LLMFlow's endpoint names.
ENDPOINTS = {"chat": "chat", "text_completion": "completions", "completion": "completions",
             "embeddings": "embeddings", "embedding": "embeddings",
             "generate_content": "generate_content", "rerank": "rerank", "response": "responses",
             "responses": "responses"}
GEN_AI_OPERATIONS = {"chat": "chat", "completions": "text_completion", "embeddings": "embeddings",
                     "generate_content": "generate_content", "messages": "chat",
                     "responses": "chat", "generate": "text_completion"}
# Every provider's finish reasons -> LLMFlow's normalised ones (as the proxy's parsers give).
FINISH_REASONS = {
    "stop": "stop", "eos": "stop", "end_turn": "stop", "stop_sequence": "stop",
    "pause_turn": "stop", "STOP": "stop", "COMPLETE": "stop", "complete": "stop",
    "length": "length", "max_tokens": "length", "MAX_TOKENS": "length", "model_length": "length",
    "model_context_window_exceeded": "length",
    "tool_calls": "tool_calls", "tool_call": "tool_calls", "function_call": "tool_calls",
    "tool_use": "tool_calls",
    "content_filter": "content_filter", "refusal": "content_filter", "SAFETY": "content_filter",
    "RECITATION": "content_filter", "error": "error",
}
GEN_AI_FINISH = {"tool_calls": "tool_call"}

# Usage, current name first.
PROMPT_TOKENS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.usage.prompt_tokens")
COMPLETION_TOKENS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens",
                     "llm.usage.completion_tokens")
TOTAL_TOKENS = ("gen_ai.usage.total_tokens", "llm.usage.total_tokens")
CACHE_READ_TOKENS = ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens",
                     "llm.usage.cache_read_input_tokens")
CACHE_CREATION_TOKENS = ("gen_ai.usage.cache_creation.input_tokens",
                         "gen_ai.usage.cache_creation_input_tokens",
                         "llm.usage.cache_creation_input_tokens")
REASONING_TOKENS = ("gen_ai.usage.reasoning_tokens", "gen_ai.usage.reasoning.output_tokens",
                    "llm.usage.reasoning_tokens")
# Request parameters: LLMFlow parameter name -> attribute names, current first.
PARAMETERS = {
    "temperature": ("gen_ai.request.temperature",),
    "top_p": ("gen_ai.request.top_p",),
    "top_k": ("gen_ai.request.top_k", "llm.top_k"),
    "max_tokens": ("gen_ai.request.max_tokens", "gen_ai.request.max_output_tokens"),
    "frequency_penalty": ("gen_ai.request.frequency_penalty", "llm.frequency_penalty"),
    "presence_penalty": ("gen_ai.request.presence_penalty", "llm.presence_penalty"),
    "stop": ("gen_ai.request.stop_sequences", "llm.chat.stop_sequences"),
    "seed": ("gen_ai.request.seed",),
    "n": ("gen_ai.request.choice.count",),
    "user": ("llm.user",),
    "reasoning_effort": ("gen_ai.request.reasoning_effort",),
}
STREAMING = ("gen_ai.is_streaming", "llm.is_streaming", "gen_ai.request.stream")
LLM_MARKERS = ("gen_ai.request.model", "gen_ai.response.model", "gen_ai.system",
               "gen_ai.provider.name", "llm.request.type", "gen_ai.usage.input_tokens",
               "gen_ai.usage.prompt_tokens", "gen_ai.input.messages", "gen_ai.prompt.0.role",
               "gen_ai.prompt.0.content")
HTTP_MARKERS = ("http.request.method", "http.method", "url.full", "http.url")
HTTP_STATUS = ("http.response.status_code", "http.status_code")
# Namespaces re-derived in an export (never copied from the raw attributes).
DERIVED_NAMESPACES = ("gen_ai.", "llm.", LLMFLOW_PREFIX)


class OTLPError(ValueError):
    """The request is not a valid OTLP trace export (answered with 400, not retried)."""


class UnsupportedMediaType(OTLPError):
    """Neither application/x-protobuf nor application/json (answered with 415)."""


class _Rejected(ValueError):
    """One span cannot be stored (bad ids or times): the others still are."""


@dataclass
class Decoded:
    spans: list[Span]
    rejected: int = 0
    errors: list[str] = field(default_factory=list)
    verbatim: set[str] = field(default_factory=set)  # ids of spans read from an LLMFlow export

    @property
    def error_message(self) -> str:
        shown = "; ".join(self.errors[:5])
        return shown + (f" (and {len(self.errors) - 5} more)" if len(self.errors) > 5 else "")


def media_kind(content_type: str | None) -> str | None:
    """``protobuf`` / ``json`` for an OTLP content type (parameters ignored), else None."""
    return MEDIA_TYPES.get((content_type or "").split(";")[0].strip().lower())


# -- protobuf classes (loaded on first use) -----------------------------------------------------
def _pb():
    from google.protobuf import json_format
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

    return trace_service_pb2, json_format, DecodeError


# -- decoding -----------------------------------------------------------------------------------
def decode_request(body: bytes, content_type: str, *,
                   free_providers: frozenset[str] = pricing.FREE_PROVIDERS) -> list[Span]:
    """The spans of an ExportTraceServiceRequest; raises OTLPError for a malformed request.

    Spans that cannot be stored (invalid ids, no start time) are left out; ``parse_request``
    also tells how many and why (for OTLP's partial success)."""
    return parse_request(body, content_type, free_providers=free_providers).spans


def parse_request(body: bytes, content_type: str, *,
                  free_providers: frozenset[str] = pricing.FREE_PROVIDERS) -> Decoded:
    kind = media_kind(content_type) or (content_type if content_type in CONTENT_TYPES else None)
    if kind is None:
        raise UnsupportedMediaType(f"unsupported content type {content_type!r}: send "
                                   "application/x-protobuf or application/json")
    message = _from_protobuf(body) if kind == PROTOBUF else _from_json(body)
    return _spans_from(message, free_providers)


def _from_protobuf(body: bytes):
    trace_service_pb2, _, DecodeError = _pb()
    message = trace_service_pb2.ExportTraceServiceRequest()
    try:
        message.ParseFromString(bytes(body))
    except (DecodeError, RecursionError, ValueError) as exc:
        raise OTLPError(f"not a protobuf ExportTraceServiceRequest: {exc}") from None
    return message


def _from_json(body: bytes):
    trace_service_pb2, json_format, _ = _pb()
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:  # includes bad UTF-8
        raise OTLPError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise OTLPError("an OTLP/JSON request is a JSON object with resourceSpans")
    _hex_ids_to_base64(doc)
    message = trace_service_pb2.ExportTraceServiceRequest()
    try:
        json_format.ParseDict(doc, message, ignore_unknown_fields=True)
    except Exception as exc:  # ParseError, ValueError, TypeError... and SystemError: upb's
        # answer to a key holding a lone surrogate ({"\\ud800": 1}), which was a 500 (tests/fuzz)
        raise OTLPError(f"not an OTLP/JSON ExportTraceServiceRequest: {exc}") from None
    return message


def _key(doc: dict, camel: str, snake: str) -> str | None:
    return camel if camel in doc else snake if snake in doc else None


def _fix_id(doc: dict, camel: str, snake: str, size: int) -> None:
    """OTLP/JSON ids are hex; protobuf's JSON mapping wants base64 for bytes fields."""
    name = _key(doc, camel, snake)
    if name is None or not isinstance(doc[name], str):
        return
    value = doc[name].strip()
    if not value:
        doc[name] = ""
        return
    try:
        raw = bytes.fromhex(value) if len(value) == size * 2 else b""
    except ValueError:
        raw = b""
    # An id that is not hex of the right length becomes one invalid byte: the span is
    # rejected by the span checks, the rest of the request still goes in.
    doc[name] = base64.b64encode(raw or b"\xff").decode()


def _dicts(value: Any) -> list[dict]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _hex_ids_to_base64(doc: dict) -> None:
    for resource_spans in _dicts(doc.get("resourceSpans", doc.get("resource_spans"))):
        for scope_spans in _dicts(resource_spans.get("scopeSpans", resource_spans.get("scope_spans"))):
            for span in _dicts(scope_spans.get("spans")):
                _fix_id(span, "traceId", "trace_id", 16)
                _fix_id(span, "spanId", "span_id", 8)
                _fix_id(span, "parentSpanId", "parent_span_id", 8)
                for link in _dicts(span.get("links")):
                    _fix_id(link, "traceId", "trace_id", 16)
                    _fix_id(link, "spanId", "span_id", 8)


def _any(value, redact: bool) -> Any:
    """An AnyValue as plain JSON data (bytes as base64 text)."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "string_value":
        return redact_text(value.string_value) if redact else value.string_value
    if which == "bool_value":
        return value.bool_value
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        number = value.double_value
        return number if math.isfinite(number) else str(number)
    if which == "array_value":
        return [_any(item, redact) for item in value.array_value.values]
    if which == "kvlist_value":
        return _attrs(value.kvlist_value.values, redact)
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return None


def _attrs(pairs, redact: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        if redact and pair.key.lower().startswith(("http.request.header.", "http.response.header.")) \
                and is_secret_header(pair.key.rsplit(".", 1)[-1]):
            out[pair.key] = REDACTED
        else:
            out[pair.key] = _any(pair.value, redact)
    return out


def _hex_id(raw: bytes, size: int, what: str) -> str:
    if len(raw) != size or not any(raw):
        raise _Rejected(f"invalid {what}")
    return raw.hex()


def _time(nanos: int) -> datetime:
    try:
        return EPOCH + timedelta(microseconds=nanos // 1000)
    except OverflowError:
        raise _Rejected("time out of range") from None


def _nanos(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1) * 1000


def _spans_from(message, free_providers: frozenset[str]) -> Decoded:
    result = Decoded([])
    for resource_spans in message.resource_spans:
        resource = _attrs(resource_spans.resource.attributes)
        service = resource.get("service.name")
        service = service if isinstance(service, str) and service else "unknown"
        for scope_spans in resource_spans.scope_spans:
            scope = {key: value for key, value in (("name", scope_spans.scope.name),
                                                   ("version", scope_spans.scope.version)) if value}
            for span in scope_spans.spans:
                try:
                    decoded, verbatim = _span(span, service, resource, scope, free_providers)
                except _Rejected as exc:
                    result.rejected += 1
                    result.errors.append(f"span {span.span_id.hex() or '?'}: {exc}")
                    continue
                result.spans.append(decoded)
                if verbatim:
                    result.verbatim.add(decoded.span_id)
    return result


def _span(pb, service: str, resource: dict, scope: dict,
          free_providers: frozenset[str]) -> tuple[Span, bool]:
    """The LLMFlow span of an OTLP span, and whether it was read back from an LLMFlow export."""
    trace_id = _hex_id(pb.trace_id, 16, "trace id")
    span_id = _hex_id(pb.span_id, 8, "span id")
    parent = _hex_id(pb.parent_span_id, 8, "parent span id") if pb.parent_span_id else None
    if not pb.start_time_unix_nano:
        raise _Rejected("no start time")
    start_ns = pb.start_time_unix_nano
    end_ns = max(pb.end_time_unix_nano, start_ns)
    start, end = _time(start_ns), _time(end_ns)
    duration = round((end_ns - start_ns) / 1_000_000, 3)

    raw = _attrs(pb.attributes)
    if SPAN_PREFIX + "source" in raw:  # exported by LLMFlow: read back as it was, unredacted
        return _from_llmflow_export(trace_id, span_id, parent, service, pb.name, start, end,
                                    _attrs(pb.attributes, redact=False)), True
    events = [{"name": event.name, "time_unix_nano": min(event.time_unix_nano, INT64_MAX),
               **({"attributes": _attrs(event.attributes)} if event.attributes else {})}
              for event in pb.events]
    links = [{"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex(),
              **({"attributes": _attrs(link.attributes)} if link.attributes else {})}
             for link in pb.links]
    status_code = STATUS_CODES.get(pb.status.code, "unset")
    otel: dict[str, Any] = {"attributes": raw, "resource": resource, "scope": scope,
                            "span_kind": SPAN_KINDS.get(pb.kind, "unspecified"),
                            "events": events, "links": links,
                            "status": {"code": status_code, **({"message": pb.status.message}
                                                                if pb.status.message else {})},
                            "trace_state": pb.trace_state}
    otel = {key: value for key, value in otel.items() if value not in ({}, [], "", None)}

    mapped = map_attributes(raw, error=status_code == "error",
                            status_message=pb.status.message, events=events,
                            free_providers=free_providers)
    attributes = {**mapped.attributes, "otel": otel}
    status = SpanStatus.ERROR if status_code == "error" else SpanStatus.SUCCESS
    override = raw.get(SPAN_PREFIX + "status")
    if isinstance(override, str) and override in STATUS_VALUES:  # a list: TypeError (tests/fuzz)
        status = SpanStatus(override)
    # Made storable: JSON-in-a-string attributes may hold NaN, 30-digit numbers, lone
    # surrogates; kvlist keys may hold NUL (BSON refuses them). Found by tests/fuzz.
    return Span(trace_id=trace_id, span_id=span_id, parent_span_id=parent, service=service,
                operation=pb.name, kind=mapped.kind, source=SpanSource.OTLP, start_time=start,
                end_time=end, duration=duration, status=status, attributes=storable(attributes),
                request=storable(mapped.request), response=storable(mapped.response),
                error=storable(mapped.error) if status is not SpanStatus.SUCCESS else None), False


STRUCTURED_ATTRIBUTES = frozenset({"custom", "otel"})


def _attribute_value_ok(name: str, value: Any) -> bool:
    """The attributes LLMFlow names are scalars but for ``custom`` and ``otel``: a list sent as
    ``llmflow.model`` reached the store's model column, and SQLite refused the whole batch
    (the receiver answered 500; found by tests/fuzz). Other names may hold anything."""
    return (name not in ATTRIBUTES or name in STRUCTURED_ATTRIBUTES
            or not isinstance(value, (list, dict)))


def _json_field(raw: Mapping[str, Any], key: str) -> Any:
    value = raw.get(key)
    return loads(value) if isinstance(value, str) else value


def _json_object(raw: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = _json_field(raw, key)
    return value if isinstance(value, dict) and value else None


def _from_llmflow_export(trace_id: str, span_id: str, parent: str | None, service: str,
                         name: str, start: datetime, end: datetime, raw: dict) -> Span:
    """A span LLMFlow exported: its fields come back from the llmflow.* attributes as they were."""
    attributes = {key[len(LLMFLOW_PREFIX):]: value for key, value in raw.items()
                  if key.startswith(LLMFLOW_PREFIX) and not key.startswith(SPAN_PREFIX)
                  and _attribute_value_ok(key[len(LLMFLOW_PREFIX):], value)}
    otel = _json_field(raw, SPAN_PREFIX + "otel")
    if isinstance(otel, dict):
        attributes["otel"] = otel
    source = raw.get(SPAN_PREFIX + "source")
    status = raw.get(SPAN_PREFIX + "status")
    duration = raw.get(SPAN_PREFIX + "duration_ms")
    try:
        return Span(trace_id=trace_id, span_id=span_id, parent_span_id=parent, service=service,
                    operation=name, kind=str(raw.get(SPAN_PREFIX + "kind") or "internal"),
                    source=source if source in SOURCE_VALUES else SpanSource.OTLP,
                    start_time=start, end_time=end,
                    duration=float(duration) if isinstance(duration, (int, float)) and not
                    isinstance(duration, bool) else (end - start).total_seconds() * 1000,
                    status=status if status in STATUS_VALUES else SpanStatus.SUCCESS,
                    attributes=storable(attributes),
                    # Objects only: a number or a list here made the span unstorable (tests/fuzz)
                    request=storable(_json_object(raw, SPAN_PREFIX + "request") or {}),
                    response=storable(_json_object(raw, SPAN_PREFIX + "response") or {}),
                    error=storable(_json_object(raw, SPAN_PREFIX + "error")))
    except (TypeError, ValueError) as exc:
        raise _Rejected(f"bad llmflow.span.* attributes: {exc}") from None


# -- the attribute mapping ----------------------------------------------------------------------
@dataclass
class Mapped:
    kind: str
    attributes: dict[str, Any]
    request: dict[str, Any]
    response: dict[str, Any]
    error: dict[str, Any] | None


def _first(raw: Mapping[str, Any], keys: Iterable[str]) -> Any:
    for key in keys:
        value = raw.get(key)
        if value is not None and value != "":
            return value
    return None


def _int(value: Any) -> int | None:
    """A count: a non-negative integer a store can hold (64 bits), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        value = int(value) if value.is_integer() else None
    elif isinstance(value, str):
        text = value.strip()
        # ASCII digits only: "²".isdigit() is True yet int("²") raises ValueError, which made
        # the receiver answer 500; and no 30-digit count (tests/fuzz found both).
        value = int(text) if text.isascii() and text.isdigit() else None
    if isinstance(value, int) and 0 <= value <= INT64_MAX:
        return value
    return None


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def normalise_provider(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    lowered = value.strip().lower()
    return PROVIDERS.get(lowered, lowered)


def normalise_finish(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return FINISH_REASONS.get(value, FINISH_REASONS.get(value.lower(), value))


def _span_kind(raw: Mapping[str, Any]) -> str:
    traceloop = raw.get("traceloop.span.kind")
    if traceloop in TRACELOOP_KINDS:
        return traceloop
    operation = raw.get("gen_ai.operation.name")
    if operation == "execute_tool":
        return "tool"
    if operation in ("invoke_agent", "create_agent"):
        return "agent"
    if any(key in raw for key in LLM_MARKERS) or any(key.startswith("gen_ai.usage.") for key in raw):
        return "llm"
    if any(key in raw for key in HTTP_MARKERS):
        return "http"
    return "internal"


def _indexed(raw: Mapping[str, Any], prefix: str) -> list[dict[str, Any]]:
    """``prefix.N.field`` (and ``prefix.N.tool_calls.M.field``) as a list of dicts, by N."""
    entries: dict[int, dict[str, Any]] = {}
    start = prefix + "."
    for key, value in raw.items():
        if not key.startswith(start):
            continue
        index, _, rest = key[len(start):].partition(".")
        if not index.isdigit() or not rest:
            continue
        entry = entries.setdefault(int(index), {})
        head, _, tail = rest.partition(".")
        sub_index, _, sub_field = tail.partition(".")
        if head == "tool_calls" and sub_index.isdigit() and sub_field:
            entry.setdefault("tool_calls", {}).setdefault(int(sub_index), {})[sub_field] = value
        else:
            entry[rest] = value
    out = []
    for index in sorted(entries):
        entry = entries[index]
        if "tool_calls" in entry:
            entry["tool_calls"] = [entry["tool_calls"][i] for i in sorted(entry["tool_calls"])]
        entry["_index"] = index
        out.append(entry)
    return out


def _maybe_json(value: Any) -> Any:
    """Message content that an instrumentation serialised (a list of parts) back to data."""
    if isinstance(value, str) and value[:1] in ("[", "{"):
        parsed = loads(value)
        if isinstance(parsed, (list, dict)):
            return parsed
    return value


def _tool_call(item: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": item.get("id"), "name": item.get("name"),
            "arguments": parse_arguments(item.get("arguments"))}


def _legacy_messages(raw: Mapping[str, Any]) -> list[dict[str, Any]]:
    messages = []
    for entry in _indexed(raw, "gen_ai.prompt"):
        message: dict[str, Any] = {"role": entry.get("role") or "user"}
        content = entry.get("content", entry.get("user"))
        if content is not None:
            message["content"] = _maybe_json(content)
        if entry.get("tool_call_id"):
            message["tool_call_id"] = entry["tool_call_id"]
        if entry.get("tool_calls"):
            message["tool_calls"] = [_tool_call(call) for call in entry["tool_calls"]]
        messages.append(message)
    return messages


def _legacy_choices(raw: Mapping[str, Any]) -> list[dict[str, Any]]:
    choices = []
    for entry in _indexed(raw, "gen_ai.completion"):
        choices.append({
            "index": entry["_index"],
            "text": _str(entry.get("content")),
            "refusal": _str(entry.get("refusal")),
            "reasoning": _str(entry.get("reasoning")),
            "tool_calls": [_tool_call(call) for call in entry.get("tool_calls", [])],
            "finish_reason": _str(entry.get("finish_reason")),
        })
    return choices


def _parts_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """A gen_ai.input/output.messages entry ({role, parts}) as an LLMFlow message."""
    out: dict[str, Any] = {"role": message.get("role") or "user"}
    parts = message.get("parts")
    if not isinstance(parts, list):  # not the parts shape: keep what was sent
        out.update({k: v for k, v in message.items() if k != "role"})
        return out
    texts, content, calls = [], [], []
    for part in parts:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text":
            texts.append(str(part.get("content") or ""))
            content.append({"type": "text", "text": str(part.get("content") or "")})
        elif kind == "tool_call":
            calls.append(_tool_call(part))
        elif kind == "tool_call_response":
            out["tool_call_id"] = part.get("id")
            response = part.get("response", part.get("result"))
            content.append(response if isinstance(response, (str, dict)) else
                           {"type": "tool_call_response", "response": response})
            if isinstance(response, str):
                texts.append(response)
        else:
            content.append(part)
    if content and len(texts) == len(content):
        out["content"] = texts[0] if len(texts) == 1 else content
    elif content:
        out["content"] = content
    if calls:
        out["tool_calls"] = calls
    if message.get("finish_reason"):
        out["finish_reason"] = message["finish_reason"]
    return out


def _current_messages(raw: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    value = _json_field(raw, "gen_ai.input.messages")
    if not isinstance(value, list):
        return None
    messages = [_parts_message(m) for m in value if isinstance(m, dict)]
    system = _json_field(raw, "gen_ai.system_instructions")
    if system:
        if isinstance(system, list):
            system = "\n".join(str(p.get("content") or "") if isinstance(p, dict) else str(p)
                               for p in system)
        messages.insert(0, {"role": "system", "content": system})
    return messages


def _current_choices(raw: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    value = _json_field(raw, "gen_ai.output.messages")
    if not isinstance(value, list):
        return None
    choices = []
    for index, message in enumerate(m for m in value if isinstance(m, dict)):
        parts = [p for p in as_list(message.get("parts")) if isinstance(p, dict)]
        texts = [str(p.get("content") or "") for p in parts if p.get("type") == "text"]
        thoughts = [str(p.get("content") or "") for p in parts if p.get("type") in ("reasoning", "thinking")]
        choices.append({
            "index": index,
            "text": "".join(texts) or None,
            "reasoning": "\n".join(thoughts) or None,
            "tool_calls": [_tool_call(p) for p in parts if p.get("type") == "tool_call"],
            "finish_reason": _str(message.get("finish_reason")),
        })
    return choices


def _output(choices: list[dict[str, Any]]) -> dict[str, Any]:
    """Like the proxy's parsers: the first choice's text, tool calls, reasoning (all if several)."""
    if not choices:
        return {}
    first = choices[0]
    output = {key: first[key] for key in ("text", "refusal", "reasoning") if first.get(key)}
    if first.get("tool_calls"):
        output["tool_calls"] = first["tool_calls"]
    if len(choices) > 1:
        output["choices"] = [{k: v for k, v in c.items() if v not in (None, [])} for c in choices]
    return output


def _tools(raw: Mapping[str, Any]) -> list[Any] | None:
    current = _json_field(raw, "gen_ai.tool.definitions")
    if isinstance(current, list):
        return current
    tools = []
    for entry in _indexed(raw, "llm.request.functions"):
        function = {k: v for k, v in (("name", entry.get("name")),
                                      ("description", entry.get("description")),
                                      ("parameters", _maybe_json(entry.get("parameters"))))
                    if v is not None}
        tools.append({"type": "function", "function": function})
    return tools or None


def _association(raw: Mapping[str, Any], attributes: dict[str, Any]) -> None:
    custom: dict[str, Any] = {}
    for key, value in raw.items():
        if key.startswith(ASSOCIATION_PREFIX) and len(key) > len(ASSOCIATION_PREFIX):
            name = key[len(ASSOCIATION_PREFIX):]
            if name in NAMED_ASSOCIATIONS:
                attributes[name] = value if isinstance(value, str) else json.dumps(value)
            else:
                custom[name] = value if isinstance(value, str) else json.dumps(value)
    for key, name in (("user.id", "user_id"), ("session.id", "session_id"),
                      ("gen_ai.conversation.id", "session_id")):
        if isinstance(raw.get(key), str) and name not in attributes:
            attributes[name] = raw[key]
    if custom:
        attributes["custom"] = custom


def _error(raw: Mapping[str, Any], status_message: str, events: list[dict[str, Any]],
           http_status: int | None) -> dict[str, Any]:
    exception = next((e.get("attributes") or {} for e in events if e.get("name") == "exception"), {})
    error = {"type": _str(raw.get("error.type")) or _str(exception.get("exception.type")) or "error",
             "message": status_message or _str(exception.get("exception.message")) or ""}
    if exception.get("exception.stacktrace"):
        error["stacktrace"] = exception["exception.stacktrace"]
    if http_status is not None:
        error["status_code"] = http_status
    return error


def _estimated(messages: list[dict[str, Any]] | None, output: dict[str, Any]) -> Usage:
    from llmflow_core.capture import estimate_tokens  # the proxy's own estimate

    prompt = estimate_tokens([m.get("content") for m in messages or []])
    completion = estimate_tokens(output.get("text") or output.get("tool_calls") or output.get("choices"))
    return Usage(prompt, completion, prompt + completion, estimated=True)


def map_attributes(raw: Mapping[str, Any], *, error: bool = False,
                   status_message: str = "", events: list[dict[str, Any]] | None = None,
                   free_providers: frozenset[str] = pricing.FREE_PROVIDERS) -> Mapped:
    """OpenTelemetry/OpenLLMetry attributes (either generation) -> LLMFlow's span fields."""
    kind = _span_kind(raw)
    attributes: dict[str, Any] = {}
    request: dict[str, Any] = {}
    response: dict[str, Any] = {}
    http_status = _int(_first(raw, HTTP_STATUS))
    if http_status is not None:
        attributes["http_status"] = http_status
    _association(raw, attributes)

    if kind == "llm":
        provider = normalise_provider(_first(raw, ("gen_ai.provider.name", "gen_ai.system")))
        request_model = _str(raw.get("gen_ai.request.model"))
        response_model = _str(raw.get("gen_ai.response.model"))
        model = response_model or request_model
        operation = _str(raw.get("gen_ai.operation.name")) or _str(raw.get("llm.request.type"))
        endpoint = ENDPOINTS.get(operation or "", operation or "chat")

        messages = _current_messages(raw)
        if messages is None:
            messages = _legacy_messages(raw)
        choices = _current_choices(raw)
        if choices is None:
            choices = _legacy_choices(raw)
        output = _output(choices)

        parameters: dict[str, Any] = {}
        for key, names in PARAMETERS.items():
            value = _first(raw, names)
            if value is not None:
                parameters[key] = value
        stream = _bool(_first(raw, STREAMING))
        if stream is not None:
            parameters["stream"] = stream
        tools = _tools(raw)
        if tools:
            parameters["tools"] = tools

        usage = Usage(
            prompt_tokens=_int(_first(raw, PROMPT_TOKENS)),
            completion_tokens=_int(_first(raw, COMPLETION_TOKENS)),
            total_tokens=_int(_first(raw, TOTAL_TOKENS)),
            cached_tokens=_int(_first(raw, CACHE_READ_TOKENS)),
            cache_creation_tokens=_int(_first(raw, CACHE_CREATION_TOKENS)),
            reasoning_tokens=_int(_first(raw, REASONING_TOKENS)),
        )
        if provider == "anthropic" and usage.prompt_tokens is not None:
            # OpenLLMetry's Anthropic input count includes the cache; LLMFlow's (and Anthropic's
            # API's) does not. A count smaller than the cache cannot include it: kept as sent.
            cache = (usage.cached_tokens or 0) + (usage.cache_creation_tokens or 0)
            if usage.prompt_tokens >= cache:
                usage.prompt_tokens -= cache
        usage.complete()
        if not usage.known and output and not error and endpoint != "embeddings":
            usage = _estimated(messages, output)

        attributes.update({
            "provider": provider,
            "endpoint": endpoint,
            "request_model": request_model,
            "response_model": response_model,
            "model": model,
            "stream": bool(stream),
            **usage.attributes(),
        })
        for key in ("temperature", "top_p", "max_tokens"):
            if key in parameters:
                attributes[key] = parameters[key]
        finish_raw = _first(raw, ("gen_ai.response.finish_reasons", "llm.response.finish_reason",
                                  "llm.response.stop_reason"))
        if isinstance(finish_raw, list):
            finish_raw = next((item for item in finish_raw if isinstance(item, str)), None)
        finish_raw = _str(finish_raw) or (choices[0].get("finish_reason") if choices else None)
        if finish_raw:
            attributes["finish_reason"] = normalise_finish(finish_raw)
            attributes["finish_reason_raw"] = finish_raw
        cost = pricing.estimate_cost(provider or "unknown", model, usage, free_providers)
        attributes["estimated_cost"] = cost
        attributes["cost_known"] = cost is not None
        ttft = _number(raw.get("gen_ai.server.time_to_first_token"))
        if ttft is not None:
            attributes["ttft_ms"] = round(ttft * 1000, 3)

        url = _str(_first(raw, ("url.full", "gen_ai.openai.api_base")))
        if url:
            request["url"] = redact_text(url)
        request["messages"] = messages
        request["parameters"] = parameters
        response["output"] = output
    else:
        for key, target in (("traceloop.entity.input", request), ("traceloop.entity.output", response)):
            if raw.get(key) is not None:
                body = _json_field(raw, key)
                target["body"] = raw[key] if body is None and raw[key] != "null" else body
        method = _str(_first(raw, ("http.request.method", "http.method")))
        url = _str(_first(raw, ("url.full", "http.url")))
        if method:
            request["method"] = method
        if url:
            request["url"] = url
        if http_status is not None:
            response["status_code"] = http_status

    # What the app set under LLMFlow's own names wins (e.g. llmflow.ttft_ms).
    for key, value in raw.items():
        if key.startswith(LLMFLOW_PREFIX) and not key.startswith(SPAN_PREFIX):
            name = key[len(LLMFLOW_PREFIX):]
            if (name in ATTRIBUTES or name == "duplicate_of") and _attribute_value_ok(name, value):
                attributes[name] = value

    attributes = {k: v for k, v in attributes.items() if v is not None or k == "estimated_cost"}
    return Mapped(kind, attributes, request, response,
                  _error(raw, status_message, events or [], http_status) if error else None)


# -- encoding -----------------------------------------------------------------------------------


def any_value(value: Any) -> dict[str, Any]:
    """A Python value as an OTLP/JSON AnyValue (None: the empty AnyValue)."""
    if value is None:
        return {}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        if -INT64_MAX - 1 <= value <= INT64_MAX:
            return {"intValue": str(value)}
        return {"stringValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value} if math.isfinite(value) else {"stringValue": str(value)}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": [{"key": str(k), "value": any_value(v)}
                                           for k, v in value.items()]}}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [any_value(v) for v in value]}}
    if isinstance(value, datetime):
        return {"stringValue": value.isoformat()}
    return {"stringValue": str(value)}


def _kv(attributes: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"key": key, "value": any_value(value)} for key, value in attributes.items()]


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))


def _content_parts(content: Any) -> list[dict[str, Any]]:
    """A message's content in any provider's shape as gen_ai parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    if isinstance(content, dict):
        content = [content]
    if not isinstance(content, list):
        return [{"type": "text", "content": str(content)}]
    parts: list[dict[str, Any]] = []
    for block in content:
        if isinstance(block, str):
            parts.append({"type": "text", "content": block})
            continue
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if isinstance(block.get("text"), str) and kind in (None, "text", "input_text", "output_text"):
            parts.append({"type": "text", "content": block["text"]})
        elif kind == "tool_use":
            parts.append({"type": "tool_call", "id": block.get("id"), "name": block.get("name"),
                          "arguments": block.get("input")})
        elif kind == "tool_result":
            parts.append({"type": "tool_call_response", "id": block.get("tool_use_id"),
                          "response": block.get("content")})
        elif kind in ("thinking", "reasoning"):
            parts.append({"type": "reasoning", "content": block.get("thinking") or block.get("text")})
        elif isinstance(block.get("functionCall"), dict):
            call = block["functionCall"]
            parts.append({"type": "tool_call", "id": call.get("id"), "name": call.get("name"),
                          "arguments": call.get("args")})
        elif isinstance(block.get("functionResponse"), dict):
            reply = block["functionResponse"]
            parts.append({"type": "tool_call_response", "id": reply.get("id"),
                          "response": reply.get("response")})
        else:
            parts.append({**block, "type": str(kind or "unknown")})
    return parts


def _call_part(call: Any) -> dict[str, Any]:
    call = call if isinstance(call, dict) else {}
    function = call.get("function") if isinstance(call.get("function"), dict) else call
    return {"type": "tool_call", "id": call.get("id"), "name": function.get("name"),
            "arguments": parse_arguments(function.get("arguments"))}


def _gen_ai_message(message: Any) -> dict[str, Any]:
    if not isinstance(message, dict):
        return {"role": "user", "parts": _content_parts(message)}
    role = str(message.get("role") or "user")
    if role == "model":
        role = "assistant"
    if role == "tool" or message.get("tool_call_id"):
        parts = [{"type": "tool_call_response", "id": message.get("tool_call_id"),
                  "response": message.get("content")}]
    else:
        parts = _content_parts(message["content"] if "content" in message else message.get("parts"))
    parts += [_call_part(call) for call in message.get("tool_calls") or []]
    return {"role": role, "parts": parts}


def _gen_ai_output(span: Span) -> list[dict[str, Any]]:
    output = span.response.get("output") if isinstance(span.response.get("output"), dict) else {}
    choices = output.get("choices") if isinstance(output.get("choices"), list) else [output]
    messages = []
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        parts: list[dict[str, Any]] = []
        if choice.get("reasoning"):
            parts.append({"type": "reasoning", "content": choice["reasoning"]})
        if choice.get("text"):
            parts.append({"type": "text", "content": choice["text"]})
        parts += [_call_part(call) for call in choice.get("tool_calls") or []]
        if not parts:
            continue
        finish = normalise_finish(choice.get("finish_reason")) or span.attributes.get("finish_reason")
        message: dict[str, Any] = {"role": "assistant", "parts": parts}
        if finish:
            message["finish_reason"] = GEN_AI_FINISH.get(finish, finish)
        messages.append(message)
    return messages


def gen_ai_attributes(span: Span) -> dict[str, Any]:
    """The current OpenTelemetry gen_ai.* attributes (as OpenLLMetry >= 0.55 writes them)."""
    attrs = span.attributes
    out: dict[str, Any] = {}
    provider = attrs.get("provider")
    if provider:
        out["gen_ai.provider.name"] = GEN_AI_PROVIDERS.get(provider, provider)
    endpoint = attrs.get("endpoint")
    out["gen_ai.operation.name"] = GEN_AI_OPERATIONS.get(endpoint, endpoint or "chat")
    for key, name in (("request_model", "gen_ai.request.model"), ("response_model", "gen_ai.response.model"),
                      ("temperature", "gen_ai.request.temperature"), ("top_p", "gen_ai.request.top_p"),
                      ("max_tokens", "gen_ai.request.max_tokens"), ("stream", "gen_ai.is_streaming")):
        if attrs.get(key) is not None:
            out[name] = attrs[key]
    if "gen_ai.request.model" not in out and attrs.get("model"):
        out["gen_ai.request.model"] = attrs["model"]
    finish = attrs.get("finish_reason")
    if finish:
        out["gen_ai.response.finish_reasons"] = [GEN_AI_FINISH.get(finish, finish)]
    prompt = attrs.get("prompt_tokens")
    if isinstance(prompt, int) and provider == "anthropic":  # the convention counts the cache in
        prompt += (attrs.get("cached_tokens") or 0) + (attrs.get("cache_creation_tokens") or 0)
    for value, name in ((prompt, "gen_ai.usage.input_tokens"),
                        (attrs.get("completion_tokens"), "gen_ai.usage.output_tokens"),
                        (attrs.get("total_tokens"), "gen_ai.usage.total_tokens"),
                        (attrs.get("reasoning_tokens"), "gen_ai.usage.reasoning_tokens"),
                        (attrs.get("cached_tokens"), "gen_ai.usage.cache_read.input_tokens"),
                        (attrs.get("cache_creation_tokens"), "gen_ai.usage.cache_creation.input_tokens")):
        if isinstance(value, int) and not isinstance(value, bool):
            out[name] = value
    messages = span.request.get("messages")
    if isinstance(messages, list) and messages:
        out["gen_ai.input.messages"] = _dumps([_gen_ai_message(m) for m in messages])
    output = _gen_ai_output(span)
    if output:
        out["gen_ai.output.messages"] = _dumps(output)
    parameters = span.request.get("parameters")
    if isinstance(parameters, dict) and isinstance(parameters.get("tools"), list):
        out["gen_ai.tool.definitions"] = _dumps(parameters["tools"])
    if span.error:
        out["error.type"] = str(span.error.get("type") or "error")
    return out


def otlp_attributes(span: Span) -> dict[str, Any]:
    """Every attribute of the exported span: standard names first, then LLMFlow's."""
    attrs = span.attributes
    otel = attrs.get("otel") if isinstance(attrs.get("otel"), dict) else {}
    raw = otel.get("attributes") if isinstance(otel.get("attributes"), dict) else {}
    out: dict[str, Any] = {key: value for key, value in raw.items()
                           if not key.startswith(DERIVED_NAMESPACES)}
    if span.kind == "llm":
        out.update(gen_ai_attributes(span))
    elif span.kind in TRACELOOP_KINDS:
        out.setdefault("traceloop.span.kind", span.kind)
    if span.request.get("method") and span.kind != "llm":
        out.setdefault("http.request.method", span.request["method"])
    if span.request.get("url"):
        out.setdefault("url.full", span.request["url"])
    if isinstance(attrs.get("http_status"), int):
        out.setdefault("http.response.status_code", attrs["http_status"])
    for name in NAMED_ASSOCIATIONS:
        if isinstance(attrs.get(name), str):
            out.setdefault(ASSOCIATION_PREFIX + name, attrs[name])
    if isinstance(attrs.get("custom"), dict):
        for name, value in attrs["custom"].items():
            out.setdefault(ASSOCIATION_PREFIX + str(name), value)
    # LLMFlow's own fields, so that nothing is lost (and the export reads back exactly).
    for key, value in attrs.items():
        if key != "otel":
            out[LLMFLOW_PREFIX + key] = value
    out[SPAN_PREFIX + "source"] = span.source.value
    out[SPAN_PREFIX + "kind"] = span.kind
    out[SPAN_PREFIX + "status"] = span.status.value
    out[SPAN_PREFIX + "duration_ms"] = float(span.duration)
    out[SPAN_PREFIX + "request"] = _dumps(dict(span.request))
    out[SPAN_PREFIX + "response"] = _dumps(dict(span.response))
    if span.error is not None:
        out[SPAN_PREFIX + "error"] = _dumps(dict(span.error))
    if otel:
        out[SPAN_PREFIX + "otel"] = _dumps(otel)
    return out


def encode_span(span: Span) -> dict[str, Any]:
    """One span as an OTLP/JSON Span object (hex ids, unix nanos as strings)."""
    attrs = span.attributes
    otel = attrs.get("otel") if isinstance(attrs.get("otel"), dict) else {}
    kind = SPAN_KIND_NUMBERS.get(str(otel.get("span_kind")), 0) or (
        3 if span.kind in ("llm", "http") else 1)
    status: dict[str, Any] = {}
    if span.status is not SpanStatus.SUCCESS:
        status = {"code": 2}
        message = (span.error or {}).get("message") or span.status.value
        status["message"] = str(message)
    elif (otel.get("status") or {}).get("code") == "ok":
        status = {"code": 1}
    out: dict[str, Any] = {
        "traceId": span.trace_id,
        "spanId": span.span_id,
        "name": span.operation,
        "kind": kind,
        "startTimeUnixNano": str(_nanos(span.start_time)),
        "endTimeUnixNano": str(_nanos(span.end_time)),
        "attributes": _kv(otlp_attributes(span)),
        "status": status,
    }
    if span.parent_span_id:
        out["parentSpanId"] = span.parent_span_id
    if otel.get("trace_state"):
        out["traceState"] = otel["trace_state"]
    events = [e for e in otel.get("events") or [] if isinstance(e, dict)]
    if events:
        out["events"] = [{"timeUnixNano": str(e.get("time_unix_nano") or 0), "name": str(e.get("name") or ""),
                          "attributes": _kv(e.get("attributes") or {})} for e in events]
    links = [link for link in otel.get("links") or [] if isinstance(link, dict)]
    if links:
        out["links"] = [{"traceId": link.get("trace_id") or "", "spanId": link.get("span_id") or "",
                         "attributes": _kv(link.get("attributes") or {})} for link in links]
    return out


def encode_json(spans: Iterable[Span]) -> dict[str, Any]:
    """An OTLP/JSON ExportTraceServiceRequest for ``spans`` (one resource per service)."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for span in spans:
        otel = span.attributes.get("otel") if isinstance(span.attributes.get("otel"), dict) else {}
        scope = otel.get("scope") if isinstance(otel.get("scope"), dict) else {}
        key = (span.service, str(scope.get("name") or "llmflow"), str(scope.get("version") or ""))
        groups.setdefault(key, []).append(encode_span(span))
    by_service: dict[str, list[dict[str, Any]]] = {}
    for (service, scope_name, scope_version), encoded in groups.items():
        scope = {"name": scope_name, **({"version": scope_version} if scope_version else {})}
        by_service.setdefault(service, []).append({"scope": scope, "spans": encoded})
    return {"resourceSpans": [
        {"resource": {"attributes": _kv({"service.name": service})}, "scopeSpans": scope_spans}
        for service, scope_spans in by_service.items()
    ]}


def encode_protobuf(spans: Iterable[Span]) -> bytes:
    """The same request as protobuf bytes (application/x-protobuf)."""
    trace_service_pb2, json_format, _ = _pb()
    doc = encode_json(spans)
    _hex_ids_to_base64(doc)
    message = trace_service_pb2.ExportTraceServiceRequest()
    json_format.ParseDict(doc, message)
    return message.SerializeToString()


def response_body(kind: str, *, rejected: int = 0, message: str = "") -> bytes:
    """An ExportTraceServiceResponse (with partial success when spans were rejected)."""
    if kind == JSON:
        if not rejected and not message:
            return b"{}"
        return json.dumps({"partialSuccess": {"rejectedSpans": str(rejected),
                                              "errorMessage": message}}).encode()
    trace_service_pb2, _, _ = _pb()
    answer = trace_service_pb2.ExportTraceServiceResponse()
    if rejected or message:
        answer.partial_success.rejected_spans = rejected
        answer.partial_success.error_message = message
    return answer.SerializeToString()


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        byte = number & 0x7F
        number >>= 7
        if number:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def status_body(kind: str | None, code: int, message: str) -> bytes:
    """A google.rpc.Status (the body OTLP/HTTP error responses carry) in the request's encoding.

    ``code`` is a gRPC status code (3 INVALID_ARGUMENT, 8 RESOURCE_EXHAUSTED, 16 UNAUTHENTICATED...)."""
    if kind == PROTOBUF:
        text = message.encode("utf-8")
        return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text
    return json.dumps({"code": code, "message": message}).encode()


# -- duplicate coverage ---------------------------------------------------------------------------
def same_call(sdk: Span, proxy: Span) -> bool:
    """True when ``proxy`` is LLMFlow's proxy record of the very LLM call that ``sdk`` (an LLM
    span an instrumented app sent over OTLP) describes.

    The OpenLLMetry instrumentation injects ``traceparent`` with its own span as parent into the
    request it sends; the proxy honours it, so its span is a direct child of the SDK span in the
    same trace. Both are LLM spans: an SDK span above a plain HTTP span is not a double count."""
    return (sdk.source is SpanSource.OTLP and proxy.source is SpanSource.PROXY
            and sdk.kind == "llm" and proxy.kind == "llm"
            and proxy.trace_id == sdk.trace_id and proxy.parent_span_id == sdk.span_id)


def _preferred(candidates: list[Span]) -> Span:
    """Of several proxy records under one SDK span (retries), the successful, latest one."""
    return max(candidates, key=lambda s: (s.status is SpanStatus.SUCCESS, s.start_time, s.span_id))


def mark_duplicates(new: Sequence[Span], stored: Iterable[Span], *,
                    keep: Collection[str] = ()) -> list[Span]:
    """``new`` (about to be written), each span that is the second record of a call marked.

    The rule: of the two records of one call, the one stored second carries
    ``duplicate_of`` = the other one's id (stores are write-once, so the first can never be
    changed afterwards). When both arrive together, the SDK span is the duplicate: the proxy's
    record has the provider's exact bytes. A stored counterpart that is itself marked as a
    duplicate is not marked again (retries: one call, several proxy records). Spans whose ids
    are in ``keep`` stay as they are (spans read back from an LLMFlow export: the LLMFlow that
    exported them has already decided)."""
    new = list(new)
    everything: dict[str, Span] = {span.span_id: span for span in stored}
    new_ids = {span.span_id for span in new}
    everything.update({span.span_id: span for span in new})
    children: dict[str, list[Span]] = {}
    for span in everything.values():
        if span.parent_span_id:
            children.setdefault(span.parent_span_id, []).append(span)
    out = []
    for span in new:
        if span.attributes.get("duplicate_of") or span.span_id in keep:
            out.append(span)
            continue
        target: Span | None = None
        if span.kind == "llm" and span.source is SpanSource.OTLP:
            proxied = [c for c in children.get(span.span_id, []) if same_call(span, c)
                       and not c.attributes.get("duplicate_of")]
            if proxied:
                target = _preferred(proxied)
        elif span.kind == "llm" and span.source is SpanSource.PROXY and span.parent_span_id:
            parent = everything.get(span.parent_span_id)
            if (parent is not None and parent.span_id not in new_ids and same_call(parent, span)
                    and not parent.attributes.get("duplicate_of")):
                target = parent
        if target is not None:
            span = span.with_changes(attributes={**span.attributes, "duplicate_of": target.span_id})
        out.append(span)
    return out


def traces_to_check(spans: Iterable[Span]) -> set[str]:
    """The traces whose stored spans ``mark_duplicates`` needs (those with a possible pair)."""
    return {span.trace_id for span in spans if span.kind == "llm" and (
        span.source is SpanSource.OTLP or span.parent_span_id)}


def duplicate_pairs(spans: Iterable[Span]) -> dict[str, str]:
    """For a trace's spans, whatever order they were stored in: span id -> the id of the other
    record of the same call, both ways (for showing "the same call, seen twice")."""
    spans = list(spans)
    by_id = {span.span_id: span for span in spans}
    pairs: dict[str, str] = {}
    for span in spans:
        parent = by_id.get(span.parent_span_id or "")
        if parent is not None and same_call(parent, span):
            pairs.setdefault(parent.span_id, span.span_id)
            pairs.setdefault(span.span_id, parent.span_id)
    return pairs


def counted(spans: Iterable[Span]) -> list[Span]:
    """The spans to add up in totals (cost, tokens, requests): each call once.

    A span marked ``duplicate_of`` never counts. A pair stored without a mark (e.g. before
    marking existed) counts its proxy record, not the SDK's."""
    spans = list(spans)
    pairs = duplicate_pairs(spans)
    by_id = {span.span_id: span for span in spans}
    kept = []
    for span in spans:
        if span.attributes.get("duplicate_of"):
            continue
        other = by_id.get(pairs.get(span.span_id, ""))
        if (other is not None and span.source is SpanSource.OTLP
                and not other.attributes.get("duplicate_of")):
            continue
        kept.append(span)
    return kept
