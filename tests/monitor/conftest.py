"""Engine fixtures for the state store, parametrised over SQLite and PostgreSQL.

SQLite always runs (a file in ``tmp_path``). PostgreSQL runs when ``LIVEWATCH_TEST_POSTGRES_URL`` is set,
e.g. ``postgresql+psycopg://postgres@127.0.0.1:5432/test``; each pytest session (each xdist worker) works in
its own schema ``lw_test_<time>_<random>``, dropped at the end, so parallel and repeated runs never collide;
the engine URL carries the ``search_path``, so a subprocess given ``engine.url`` sees the same schema.

Fixtures:
    store_engine: a migrated, empty database (tables emptied before each test on PostgreSQL).
    store: a :class:`monitor.store.SqlStore` on ``store_engine``.
    blank_engine: a database with no tables at all (for migration tests); a fresh schema on PostgreSQL.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from monitor.store import SqlStore, make_engine, metadata, upgrade
from tests.fakeslack import fake_slack, fake_slack_server  # noqa: F401 - shared fixtures

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


#: Schemas of sessions killed before their teardown are dropped by a later session after this long.
STALE_SCHEMA_SECONDS = 3600


def _drop_schema(admin: Engine, schema: str) -> None:
    """Drop ``schema``; if a stuck connection still locks it, warn instead of hanging the session."""
    try:
        with admin.begin() as connection:
            connection.execute(sa.text("SET LOCAL lock_timeout = '10s'"))
            connection.execute(sa.schema.DropSchema(schema, cascade=True, if_exists=True))
    except sa.exc.OperationalError as exc:
        warnings.warn(
            f"test schema {schema} is still locked ({exc.orig}); a session started more than "
            f"{STALE_SCHEMA_SECONDS} s later drops it",
            stacklevel=2,
        )


def _drop_stale_schemas(admin: Engine) -> None:
    cutoff = int(time.time()) - STALE_SCHEMA_SECONDS
    with admin.connect() as connection:
        names = (
            connection.execute(sa.text("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'lw\\_test\\_%'"))
            .scalars()
            .all()
        )
    for name in names:
        parts = name.split("_")
        if len(parts) == 4 and parts[2].isdigit() and int(parts[2]) < cutoff:
            _drop_schema(admin, name)


@pytest.fixture(scope="session")
def postgres_schema_factory() -> Iterator[Callable[[], Engine]]:
    """Make engines each confined (``search_path`` in the URL) to a new schema; dropped at session end.

    Schema names are ``lw_test_<unix time>_<random>``; leftovers of killed sessions older than
    :data:`STALE_SCHEMA_SECONDS` are dropped when the factory first runs.
    """
    created: list[tuple[str, Engine]] = []
    admin: Engine | None = None

    def make() -> Engine:
        nonlocal admin
        url = _skip_without_postgres()
        if admin is None:
            admin = make_engine(url)
            _drop_stale_schemas(admin)
        schema = f"lw_test_{int(time.time())}_{uuid.uuid4().hex[:8]}"
        with admin.begin() as connection:
            connection.execute(sa.schema.CreateSchema(schema))
        engine = make_engine(sa.make_url(url).update_query_dict({"options": f"-csearch_path={schema}"}))
        created.append((schema, engine))
        return engine

    yield make
    for schema, engine in created:
        engine.dispose()
        assert admin is not None
        _drop_schema(admin, schema)
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
