"""Django settings for the in-process tests: the real settings, with a throwaway data dir and
a clean environment (whatever the developer's shell has set)."""

import os
import tempfile

for _key in list(os.environ):
    if _key.startswith(("UPSTREAM_", "MONGO_", "AUTH_")) or _key in ("SECRET_KEY", "PORT", "PROXY_PORT"):
        del os.environ[_key]
os.environ["LLMFLOW_DATA_DIR"] = tempfile.mkdtemp(prefix="llmflow-test-")

from llmflow_dashboard.settings import *  # noqa: E402,F401,F403

# In-process tests render templates without running collectstatic first.
STORAGES = {"staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
