"""Readable text out of any provider's message shapes: for previews, conversations and search."""

from __future__ import annotations

from typing import Any

SEARCH_TEXT_LIMIT = 16 * 1024  # per span: enough to find a call, small next to the payloads


def content_text(content: Any) -> str:
    """The text of a message's content: a string, OpenAI/Anthropic parts, Gemini parts..."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        for key in ("text", "content", "input_text", "output_text"):
            if isinstance(content.get(key), str):
                return content[key]
        if "parts" in content:
            return content_text(content["parts"])
        return ""
    if isinstance(content, list):
        return " ".join(filter(None, (content_text(part) for part in content)))
    return str(content)


def message_text(message: Any) -> str:
    if not isinstance(message, dict):
        return content_text(message)
    if "content" in message:
        return content_text(message["content"])
    return content_text(message.get("parts"))


def search_text(request: Any, response: Any, error: Any) -> str:
    """What full-text search looks in: the prompt, the answer, tool calls and the error."""
    pieces: list[str] = []
    if isinstance(request, dict):
        for message in request.get("messages") or []:
            pieces.append(message_text(message))
    if isinstance(response, dict):
        output = response.get("output") or {}
        if isinstance(output, dict):
            for key in ("text", "reasoning", "refusal"):
                if isinstance(output.get(key), str):
                    pieces.append(output[key])
            for call in output.get("tool_calls") or []:
                if isinstance(call, dict):
                    pieces.append(f"{call.get('name') or ''} {call.get('arguments') or ''}")
    if isinstance(error, dict) and error.get("message"):
        pieces.append(str(error["message"]))
    return " ".join(p for p in pieces if p)[:SEARCH_TEXT_LIMIT]
