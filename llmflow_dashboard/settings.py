"""Django settings. LLMFlow's own variables are defined once, in llmflow_core.config.

django-environ loads an optional ``.env`` file (values already in the environment win), then
the shared definitions are read from the environment; a bad value stops start-up with a
message that names the variable.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import environ

from llmflow_core import config as llmflow_config

BASE_DIR = Path(__file__).resolve().parent.parent
environ.Env.read_env(BASE_DIR / ".env")

try:
    LLMFLOW = llmflow_config.load()
except llmflow_config.ConfigError as exc:
    sys.exit(f"llmflow dashboard: {exc}")


def _secret_key() -> str:
    """SECRET_KEY, or one generated on first start and kept (owner-only) in the data dir."""
    if LLMFLOW.secret_key:
        return LLMFLOW.secret_key
    path = LLMFLOW.data_dir / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        LLMFLOW.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(50)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key)
        return key


SECRET_KEY = _secret_key()
DEBUG = LLMFLOW.debug
ALLOWED_HOSTS = list(LLMFLOW.allowed_hosts)
CSRF_TRUSTED_ORIGINS = list(LLMFLOW.csrf_trusted_origins)

INSTALLED_APPS = [
    "django.contrib.staticfiles",
    "llmflow_dashboard",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "llmflow_dashboard.security.SecurityHeadersMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "llmflow_dashboard.auth.LoginRequiredMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "llmflow_dashboard.urls"
WSGI_APPLICATION = "llmflow_dashboard.wsgi.application"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [],
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.template.context_processors.csrf",
        "llmflow_dashboard.auth.context",
        "llmflow_dashboard.health.context",
    ]},
}]

# No relational database: spans live behind llmflow_core's store contract, logins in signed
# cookies, the login throttle in a file cache shared by the gunicorn workers.
DATABASES: dict = {}
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
SESSION_COOKIE_AGE = LLMFLOW.session_hours * 3600
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
if LLMFLOW.secure_proxy_ssl_header:
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + LLMFLOW.secure_proxy_ssl_header.upper().replace("-", "_"),
                               "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
CACHES = {"default": {
    "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
    "LOCATION": str(LLMFLOW.data_dir / "cache"),
}}

X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["stderr"], "level": LLMFLOW.log_level},
}
