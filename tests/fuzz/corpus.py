"""The fuzz corpus: every input that found a bug, one JSON file per case in ``corpus/``, named
for what it broke; ``test_corpus.py`` replays them all against the component they broke.

A case file::

    {"target": "parser" | "build_span" | "otlp_decode" | "otlp_receiver",
     "broke": "what went wrong before the fix",
     "fixed_in": "file:function",
     "input": {...}}

Bytes are stored as ``{"b64": "..."}``; strings keep lone surrogates as JSON ``\\udXXX`` escapes.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).resolve().parent / "corpus"
TARGETS = ("parser", "build_span", "otlp_decode", "otlp_receiver")


def _pack(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return {"b64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, dict):
        return {key: _pack(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_pack(item) for item in value]
    return value


def _unpack(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"b64"}:
            return base64.b64decode(value["b64"])
        return {key: _unpack(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unpack(item) for item in value]
    return value


def save(name: str, target: str, broke: str, fixed_in: str, **inputs: Any) -> Path:
    """Write one case (used when a property test finds a failure)."""
    assert target in TARGETS, target
    CORPUS.mkdir(exist_ok=True)
    path = CORPUS / f"{name}.json"
    doc = {"target": target, "broke": broke, "fixed_in": fixed_in, "input": _pack(inputs)}
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def load(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_text())
    assert doc["target"] in TARGETS, path
    doc["input"] = _unpack(doc["input"])
    return doc


def cases() -> list[Path]:
    return sorted(CORPUS.glob("*.json"))
