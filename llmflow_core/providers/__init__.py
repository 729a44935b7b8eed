"""Provider parsers: one module per wire format, chosen by route name and path.

Each module has ``parse(path, request_body, response, status, streamed) -> ParsedCall | None``
(None: not an endpoint it knows; the span is then recorded as a generic HTTP call).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from llmflow_core.providers import anthropic, gemini, ollama, openai
from llmflow_core.providers.base import ParsedCall

# Route name -> parser module. Any route not listed speaks the OpenAI-compatible format.
PARSERS: dict[str, ModuleType] = {"anthropic": anthropic, "gemini": gemini, "ollama": ollama}
DEFAULT_PARSER = openai


def register(route: str, module: ModuleType) -> None:
    PARSERS[route] = module


def parse(route: str, path: str, request_body: Any, response: bytes, status: int | None,
          streamed: bool) -> ParsedCall | None:
    module = PARSERS.get(route, DEFAULT_PARSER)
    call = module.parse(path, request_body, response, status, streamed)
    if call is None and module is not DEFAULT_PARSER:
        call = DEFAULT_PARSER.parse(path, request_body, response, status, streamed)
    return call


__all__ = ["ParsedCall", "parse", "register", "PARSERS"]
