from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client

from llmflow_dashboard import repository


@pytest.fixture(autouse=True)
def clean_throttle():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(params=["sqlite", "mongomock"])
def data(request):
    """The dashboard served from a fresh store (each backend's test double)."""
    current = request.getfixturevalue(f"{request.param}_store")
    repository.use_store(current)
    yield current
    repository.use_store(None)


@pytest.fixture
def logged_in(data) -> Client:
    client = Client()
    response = client.post("/login", {"username": "llmflow", "password": "password"})
    assert response.status_code == 302
    return client
