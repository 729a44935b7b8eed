"""Login with AUTH_USERNAME / AUTH_PASSWORD: session cookie for pages, HTTP Basic for the API.

No user database: the credentials come from the configuration. Failed logins are throttled per
client address (a file cache shared by the gunicorn workers).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Callable
from urllib.parse import urlencode

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme

SESSION_KEY = "llmflow_user"
# Paths served without a login: the login page itself, health checks, static files, and the
# OTLP receiver (which has its own optional token).
PUBLIC_PREFIXES = ("/login", "/healthz", "/static/", "/favicon.ico", "/v1/")
MAX_FAILURES = 5
LOCKOUT_SECONDS = 300


def check_credentials(username: str, password: str) -> bool:
    config = settings.LLMFLOW
    user_ok = hmac.compare_digest(username.encode(), config.auth_username.encode())
    password_ok = hmac.compare_digest(password.encode(), config.auth_password.encode())
    return user_ok and password_ok


def client_address(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR", "unknown")


def _failures_key(request: HttpRequest) -> str:
    return f"llmflow-login-failures:{client_address(request)}"


def locked_out(request: HttpRequest) -> bool:
    return cache.get(_failures_key(request), 0) >= MAX_FAILURES


def record_failure(request: HttpRequest) -> None:
    key = _failures_key(request)
    cache.set(key, cache.get(key, 0) + 1, LOCKOUT_SECONDS)


def clear_failures(request: HttpRequest) -> None:
    cache.delete(_failures_key(request))


def basic_auth_ok(request: HttpRequest) -> bool:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return False
    try:
        username, _, password = base64.b64decode(value.strip()).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    if locked_out(request):
        return False
    if check_credentials(username, password):
        return True
    record_failure(request)
    return False


def is_logged_in(request: HttpRequest) -> bool:
    return request.session.get(SESSION_KEY) == settings.LLMFLOW.auth_username


def safe_next(request: HttpRequest, target: str | None) -> str:
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return "/"


class LoginRequiredMiddleware:
    """Everything but PUBLIC_PREFIXES needs a login: pages redirect, the API answers 401."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path
        if path.startswith(PUBLIC_PREFIXES) or is_logged_in(request):
            return self.get_response(request)
        if path.startswith("/api/"):
            if basic_auth_ok(request):
                request.csrf_processing_done = True  # Basic auth is not a cookie: no CSRF risk
                return self.get_response(request)
            response = JsonResponse({"error": "authentication required"}, status=401)
            response["WWW-Authenticate"] = 'Basic realm="LLMFlow", charset="UTF-8"'
            return response
        return redirect("/login?" + urlencode({"next": request.get_full_path()}) if path != "/"
                        else "/login")


def context(request: HttpRequest) -> dict[str, object]:
    """Template context: who is logged in, and whether the default password is still in use."""
    config = settings.LLMFLOW
    return {"llmflow_user": request.session.get(SESSION_KEY) if hasattr(request, "session") else None,
            "default_credentials": config.uses_default_credentials}
