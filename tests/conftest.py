"""Fixtures shared by the whole suite: stores (one contract, every backend) and the real stack."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Iterator

import mongomock
import pytest
from pymongo import MongoClient

from llmflow_core.store.mongo import MongoStore
from llmflow_core.store.sqlite import SQLiteStore
from tests.support.mock_upstream import MockUpstream
from tests.support.processes import ROOT, Service, start_mongo_wire

ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A real MongoDB wire-protocol server (SecantusDB) for the whole session."""
    base = tmp_path_factory.mktemp("mongo")
    server = start_mongo_wire(base / "db", base)
    yield server
    server.stop()


def mongo_uri(server: Service, database: str) -> str:
    return f"mongodb://127.0.0.1:{server.port}/{database}?directConnection=true"


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "spans.sqlite3")
    yield store
    store.close()


@pytest.fixture
def mongomock_store() -> Iterator[MongoStore]:
    store = MongoStore(client=mongomock.MongoClient(tz_aware=True), database="llmflow_test")
    yield store


@pytest.fixture
def mongo_store(mongo_server: Service) -> Iterator[MongoStore]:
    name = f"t{uuid.uuid4().hex[:12]}"
    store = MongoStore(mongo_uri(mongo_server, name))
    yield store
    MongoClient(mongo_uri(mongo_server, name)).drop_database(name)
    store.close()


@pytest.fixture(params=["sqlite", "mongomock", "mongo"])
def store(request: pytest.FixtureRequest):
    """Every store implementation: the contract suite runs once per backend."""
    return request.getfixturevalue(f"{request.param}_store")


@pytest.fixture
def upstream() -> Iterator[MockUpstream]:
    mock = MockUpstream().start()
    yield mock
    mock.stop()
