"""Engine fixtures for the state store, parametrised over SQLite and PostgreSQL.

SQLite always runs (a file in ``tmp_path``). PostgreSQL runs when ``LIVEWATCH_TEST_POSTGRES_URL`` is set,
e.g. ``postgresql+psycopg://postgres@127.0.0.1:5432/test``; each pytest session (each xdist worker) works in
its own schema ``lw_test_<random>``, dropped at the end, so parallel and repeated runs never collide.

Fixtures:
    store_engine: a migrated, empty database (tables emptied before each test on PostgreSQL).
    store: a :class:`monitor.store.SqlStore` on ``store_engine``.
    blank_engine: a database with no tables at all (for migration tests); a fresh schema on PostgreSQL.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from monitor.store import SqlStore, make_engine, metadata, upgrade

POSTGRES_ENV = "LIVEWATCH_TEST_POSTGRES_URL"
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def _skip_without_postgres() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(
            f"PostgreSQL store tests need {POSTGRES_ENV}, "
            "e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test"
        )
    return url


@pytest.fixture(scope="session")
def postgres_schema_factory() -> Iterator[Callable[[], Engine]]:
    """Make engines each confined (via ``search_path``) to a new schema; all dropped at session end."""
    created: list[tuple[str, Engine]] = []
    admin: Engine | None = None

    def make() -> Engine:
        nonlocal admin
        url = _skip_without_postgres()
        if admin is None:
            admin = make_engine(url)
        schema = f"lw_test_{uuid.uuid4().hex[:12]}"
        with admin.begin() as connection:
            connection.execute(sa.schema.CreateSchema(schema))
        engine = make_engine(url, connect_args={"options": f"-csearch_path={schema}"})
        created.append((schema, engine))
        return engine

    yield make
    for schema, engine in created:
        engine.dispose()
        assert admin is not None
        with admin.begin() as connection:
            connection.execute(sa.schema.DropSchema(schema, cascade=True))
    if admin is not None:
        admin.dispose()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per session; tests get a copy (migrating each time is slower)."""
    path = tmp_path_factory.mktemp("store-template") / "store.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def _postgres_migrated(postgres_schema_factory: Callable[[], Engine]) -> Engine:
    engine = postgres_schema_factory()
    upgrade(engine)
    return engine


@pytest.fixture(params=BACKENDS)
def store_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated database with empty tables, on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "store.db"
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        engine = make_engine(f"sqlite:///{path}")
        yield engine
        engine.dispose()
        return
    engine = request.getfixturevalue("_postgres_migrated")
    with engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            connection.execute(table.delete())
    yield engine


@pytest.fixture
def store(store_engine: Engine) -> SqlStore:
    return SqlStore(store_engine)


@pytest.fixture(params=BACKENDS)
def blank_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty database (no tables, no alembic version), on each backend."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'blank.db'}")
    else:
        engine = request.getfixturevalue("postgres_schema_factory")()
    yield engine
    engine.dispose()
