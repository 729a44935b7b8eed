"""Which upstream a request goes to, decided from its path (base-URL mode) or host.

Only configured upstreams are ever dialled: a caller cannot name a host (no open relay).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping
from urllib.parse import urlsplit

# Hosts of the built-in routes, for HTTPS_PROXY interception: host -> route name.
KNOWN_HOSTS: dict[str, str] = {
    "api.openai.com": "openai",
    "api.anthropic.com": "anthropic",
    "generativelanguage.googleapis.com": "gemini",
    "api.groq.com": "groq",
    "api.mistral.ai": "mistral",
    "api.deepseek.com": "deepseek",
    "openrouter.ai": "openrouter",
    "api.together.xyz": "together",
}


@dataclass(frozen=True, slots=True)
class Route:
    name: str  # route/provider name
    scheme: str
    host: str
    port: int
    path: str  # the path (with query) to send upstream

    @property
    def url(self) -> str:
        default = 443 if self.scheme == "https" else 80
        netloc = self.host if self.port == default else f"{self.host}:{self.port}"
        return f"{self.scheme}://{netloc}{self.path}"


def _target(name: str, base_url: str, rest: str) -> Route:
    parts = urlsplit(base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    base_path = parts.path.rstrip("/")
    return Route(name, parts.scheme, parts.hostname or "", port, base_path + rest)


def default_route_name(path: str) -> str:
    """The route for an unprefixed path, from the SDKs' default URL shapes."""
    bare = path.split("?", 1)[0]
    if bare.startswith("/v1/messages") or bare == "/v1/complete":
        return "anthropic"
    if bare.startswith("/v1beta/") or (bare.startswith("/v1/models/") and ":" in bare):
        return "gemini"
    if bare.startswith("/api/"):
        return "ollama"
    return "openai"


def route_request(path: str, upstreams: Mapping[str, str]) -> Route:
    """Base-URL mode: ``/<name>/rest`` goes to UPSTREAM_<NAME>; other paths by their shape."""
    if not path.startswith("/"):
        path = "/" + path
    first, _, rest = path[1:].partition("/")
    name = first.split("?", 1)[0].lower()
    if name in upstreams and name not in ("v1", "v1beta", "api"):
        return _target(name, upstreams[name], "/" + rest if rest or "?" not in first else "/")
    name = default_route_name(path)
    return _target(name, upstreams[name], path)


def route_for_host(host: str, path: str, upstreams: Mapping[str, str]) -> Route | None:
    """HTTPS_PROXY mode: a known LLM host is sent to its configured upstream, others not at all."""
    name = KNOWN_HOSTS.get(host.lower())
    if name is None:
        return None
    return _target(name, upstreams[name], path)
