"""WSGI entry point (gunicorn llmflow_dashboard.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmflow_dashboard.settings")
application = get_wsgi_application()
