"""Every setting LLMFlow reads from the environment, defined once.

The proxy reads them with ``load()``; the Django settings read the same definitions through
django-environ (``llmflow_dashboard.settings``). ``SETTINGS`` is also what the README's
configuration table, the launcher's start-up print-out and the compose-file test are checked
against, so adding a variable means adding it here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit, urlunsplit


class ConfigError(ValueError):
    """A setting has a value LLMFlow cannot use; the message names the variable."""


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?i?b?)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2,
               "mib": 1024**2, "g": 1024**3, "gb": 1024**3, "gib": 1024**3}


def parse_size(text: str) -> int:
    """Bytes from ``1MB``, ``512KB``, ``2048`` (binary units: 1KB = 1024 bytes)."""
    match = _SIZE_RE.match(text)
    unit = (match.group(2) or "").lower() if match else None
    if not match or unit not in _SIZE_UNITS:
        raise ValueError("expected a size such as 1MB, 512KB or 2048 (bytes)")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("expected true/false, yes/no, on/off or 1/0")


def parse_port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise ValueError("expected a port number from 0 to 65535")
    return port


def parse_positive_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("expected a whole number, 0 or more")
    return value


def parse_workers(text: str) -> int:
    """A number of proxy processes from 1 to 64, or ``auto`` (one per available core)."""
    value = text.strip().lower()
    if value == "auto":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, min(64, cores))
    if not value.isdigit() or not 1 <= int(value) <= 64:
        raise ValueError("expected a number of proxy processes from 1 to 64, or auto")
    return int(value)


def parse_url(text: str) -> str:
    parts = urlsplit(text.strip())
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL")
    return text.strip().rstrip("/")


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    help: str
    parse: Callable[[str], Any] = str
    secret: bool = False
    accepted: str = ""  # the accepted forms, for error messages

    def read(self, environ: Mapping[str, str]) -> Any:
        raw = environ.get(self.name, self.default)
        try:
            return self.parse(raw)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{self.name}={raw!r} is not valid: {exc}") from None


SETTINGS: tuple[Setting, ...] = (
    Setting("MONGO_URI", "", "MongoDB connection string. Empty: the embedded SQLite store.", secret=True),
    Setting("LLMFLOW_DATA_DIR", "./data", "Where the SQLite store, the secret key "
            "and the proxy's CA certificate live."),
    Setting("AUTH_USERNAME", "llmflow", "Dashboard login name."),
    Setting("AUTH_PASSWORD", "password", "Dashboard password. Change it: the dashboard warns "
            "while the default is in use.", secret=True),
    Setting("PORT", "3000", "Dashboard port.", parse_port),
    Setting("PROXY_PORT", "8080", "Proxy port for apps that set their base URL to LLMFlow.", parse_port),
    Setting("PROXY_WORKERS", "1", "Proxy processes sharing the proxy ports (Linux SO_REUSEPORT), "
            "each recording on its own: a number from 1 to 64, or auto for one per core.",
            parse_workers, accepted="1, 2, auto"),
    Setting("INTERCEPT_PORT", "8081", "Proxy port for apps that set HTTPS_PROXY: only known LLM API "
            "hosts are intercepted, everything else is tunnelled untouched.", parse_port),
    Setting("CONNECT_TIMEOUT", "30", "Seconds to wait for an upstream to accept a "
            "connection; then the caller gets a 502 and the span says upstream_timeout. (Answers "
            "themselves are never timed out: a model may think for minutes.)", parse_positive_int),
    Setting("FREE_PROVIDERS", "ollama", "Routes whose models cost nothing (local models), "
            "comma-separated; their calls are priced at $0 instead of unknown."),
    Setting("BIND_HOST", "127.0.0.1", "Address the proxy and the dashboard listen on "
            "(0.0.0.0 in containers)."),
    Setting("RETENTION_DAYS", "30", "Spans older than this many days are deleted (0 keeps them).",
            parse_positive_int),
    Setting("RETENTION_PAYLOAD_DAYS", "0", "Prompts and responses older than this many days are "
            "dropped while counts and costs stay for the charts (0: kept as long as the span).",
            parse_positive_int),
    Setting("MAX_RESPONSE_SIZE", "1MB", "Stored request and response bodies are cut at this size "
            "(the call itself is never cut).", parse_size, accepted="1MB, 512KB, 2048"),
    Setting("SERVICE_NAME", "llmflow-proxy", "Service name on proxied spans when the app sends no "
            "X-Trace-Service header."),
    Setting("SECRET_KEY", "", "Django secret key. Empty: one is generated once and kept in "
            "LLMFLOW_DATA_DIR.", secret=True),
    Setting("OTLP_INGEST_TOKEN", "", "Token the OTLP receiver (/v1/traces) requires as "
            "'Authorization: Bearer <token>' (Traceloop SDK: TRACELOOP_API_KEY). Empty: anyone "
            "who reaches the dashboard port may send spans.", secret=True),
    Setting("OTLP_MAX_BODY_SIZE", "16MB", "Largest OTLP request accepted, before and after gzip "
            "(413 above it).", parse_size, accepted="16MB, 512KB"),
    Setting("PROXY_ACCESS_KEY", "", "When set, callers must send it as the X-LLMFlow-Key header "
            "(or, in HTTPS_PROXY mode, as the proxy password: http://llmflow:<key>@host:8081); "
            "it is removed before the call goes upstream. Empty: anyone who reaches the proxy "
            "ports may use it.", secret=True),
    Setting("OTEL_EXPORTER_OTLP_ENDPOINT", "", "Also send every proxied span to this OTLP/HTTP "
            "collector (Jaeger, Tempo...), e.g. http://collector:4318; LLMFlow keeps its own copy "
            "whatever the collector does."),
    Setting("OTEL_EXPORTER_OTLP_HEADERS", "", "Headers for that collector, key=value,key2=value2.",
            secret=True),
    Setting("SPOOL_MAX_SIZE", "512MB", "Disk the proxy may use to keep spans while the store is "
            "down or slow; they are written when it is back.", parse_size, accepted="512MB, 1GB"),
    Setting("LOG_LEVEL", "INFO", "Log level of the proxy and the dashboard."),
    Setting("ALLOWED_HOSTS", "*", "Dashboard host names, comma-separated (Django ALLOWED_HOSTS)."),
    Setting("CSRF_TRUSTED_ORIGINS", "", "Origins allowed to post forms when the dashboard is behind "
            "an HTTPS reverse proxy, comma-separated (e.g. https://llmflow.example.com)."),
    Setting("SECURE_PROXY_SSL_HEADER", "", "Set to X-Forwarded-Proto when a reverse proxy "
            "terminates HTTPS: cookies then get the Secure flag."),
    Setting("SESSION_HOURS", "12", "Dashboard logins expire after this many hours.",
            parse_positive_int),
    Setting("DEBUG", "false", "Django debug pages. Never in production.", parse_bool),
)

# Built-in upstreams. UPSTREAM_<NAME>=<base URL> overrides one or defines a new route /<name>/...
DEFAULT_UPSTREAMS: dict[str, str] = {
    "openai": "https://api.openai.com",
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",
    "ollama": "http://localhost:11434",
    "groq": "https://api.groq.com/openai",
    "mistral": "https://api.mistral.ai",
    "deepseek": "https://api.deepseek.com",
    "openrouter": "https://openrouter.ai/api",
    "together": "https://api.together.xyz",
}
UPSTREAM_PREFIX = "UPSTREAM_"

_BY_NAME = {setting.name: setting for setting in SETTINGS}


@dataclass(frozen=True)
class Config:
    mongo_uri: str
    data_dir: Path
    auth_username: str
    auth_password: str
    port: int
    proxy_port: int
    intercept_port: int
    connect_timeout: int
    proxy_workers: int
    free_providers: frozenset[str]
    bind_host: str
    retention_days: int
    retention_payload_days: int
    max_response_size: int
    service_name: str
    secret_key: str
    otlp_ingest_token: str
    otlp_max_body_size: int
    spool_max_size: int
    otlp_forward_endpoint: str
    otlp_forward_headers: str
    proxy_access_key: str
    log_level: str
    allowed_hosts: tuple[str, ...]
    csrf_trusted_origins: tuple[str, ...]
    secure_proxy_ssl_header: str
    session_hours: int
    debug: bool
    upstreams: Mapping[str, str]

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "llmflow.sqlite3"

    @property
    def uses_default_credentials(self) -> bool:
        return (self.auth_username, self.auth_password) == (
            _BY_NAME["AUTH_USERNAME"].default, _BY_NAME["AUTH_PASSWORD"].default)


def read_upstreams(environ: Mapping[str, str]) -> dict[str, str]:
    upstreams = dict(DEFAULT_UPSTREAMS)
    for key, value in environ.items():
        if key.startswith(UPSTREAM_PREFIX) and len(key) > len(UPSTREAM_PREFIX):
            name = key[len(UPSTREAM_PREFIX):].lower()
            if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
                raise ConfigError(f"{key}: route names use letters, digits, '-' and '_'")
            try:
                upstreams[name] = parse_url(value)
            except ValueError as exc:
                raise ConfigError(f"{key}={value!r} is not valid: {exc}") from None
    return upstreams


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def load(environ: Mapping[str, str] | None = None) -> Config:
    env = os.environ if environ is None else environ
    values = {setting.name: setting.read(env) for setting in SETTINGS}
    if values["INTERCEPT_PORT"] and values["INTERCEPT_PORT"] == values["PROXY_PORT"]:
        raise ConfigError(f"INTERCEPT_PORT and PROXY_PORT must differ (both are {values['PROXY_PORT']})")
    return Config(
        mongo_uri=values["MONGO_URI"].strip(),
        data_dir=Path(values["LLMFLOW_DATA_DIR"]).expanduser().resolve(),
        auth_username=values["AUTH_USERNAME"],
        auth_password=values["AUTH_PASSWORD"],
        port=values["PORT"],
        proxy_port=values["PROXY_PORT"],
        intercept_port=values["INTERCEPT_PORT"],
        connect_timeout=values["CONNECT_TIMEOUT"],
        proxy_workers=values["PROXY_WORKERS"],
        free_providers=frozenset(name.lower() for name in _split(values["FREE_PROVIDERS"])),
        bind_host=values["BIND_HOST"],
        retention_days=values["RETENTION_DAYS"],
        retention_payload_days=values["RETENTION_PAYLOAD_DAYS"],
        max_response_size=values["MAX_RESPONSE_SIZE"],
        service_name=values["SERVICE_NAME"],
        secret_key=values["SECRET_KEY"],
        otlp_ingest_token=values["OTLP_INGEST_TOKEN"].strip(),
        otlp_max_body_size=values["OTLP_MAX_BODY_SIZE"],
        spool_max_size=values["SPOOL_MAX_SIZE"],
        otlp_forward_endpoint=values["OTEL_EXPORTER_OTLP_ENDPOINT"].strip(),
        otlp_forward_headers=values["OTEL_EXPORTER_OTLP_HEADERS"],
        proxy_access_key=values["PROXY_ACCESS_KEY"],
        log_level=values["LOG_LEVEL"].upper(),
        allowed_hosts=_split(values["ALLOWED_HOSTS"]),
        csrf_trusted_origins=_split(values["CSRF_TRUSTED_ORIGINS"]),
        secure_proxy_ssl_header=values["SECURE_PROXY_SSL_HEADER"].strip(),
        session_hours=values["SESSION_HOURS"],
        debug=values["DEBUG"],
        upstreams=read_upstreams(env),
    )


def mask_uri(uri: str) -> str:
    """A connection string with its password replaced, for logs."""
    parts = urlsplit(uri)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":****@")
        return urlunsplit(parts._replace(netloc=netloc))
    return uri


def describe(config: Config, environ: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """(name, value) pairs of the effective configuration, secrets masked."""
    env = os.environ if environ is None else environ
    rows = []
    for setting in SETTINGS:
        raw = env.get(setting.name, setting.default)
        if setting.name == "MONGO_URI":
            shown = mask_uri(raw) if raw else "(unset: embedded SQLite)"
        elif setting.secret:
            shown = "****" if raw else "(unset)"
        else:
            shown = raw
        rows.append((setting.name, shown))
    for name, url in sorted(config.upstreams.items()):
        rows.append((UPSTREAM_PREFIX + name.upper(), url))
    return rows
