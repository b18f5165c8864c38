"""Engine settings and Alembic migrations of the state store (``livewatch db upgrade``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from monitor.store.schema import MigrationError

if TYPE_CHECKING:  # alembic takes about a second to import: only the migration functions load it
    from alembic.config import Config
    from alembic.script import ScriptDirectory

__all__ = [
    "HEAD_REVISION",
    "MIGRATIONS_DIR",
    "check_up_to_date",
    "current_revisions",
    "is_up_to_date",
    "make_engine",
    "upgrade",
]


# -- engine and migrations ------------------------------------------------------------------------
MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def make_engine(url: str | sa.URL, **kwargs: Any) -> Engine:
    """Create an engine with the settings the store relies on.

    On SQLite, foreign keys are enforced, writers wait up to 30 s for the file lock instead of failing at
    once, and the journal is a write-ahead log so readers (the CLI) and the daemon do not block each other.
    Other keyword arguments go to ``sqlalchemy.create_engine``.
    """
    engine = sa.create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_on_connect)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA journal_mode=WAL")  # CLI readers never block the daemon's writes
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable across crashes of the process in WAL mode
    finally:
        cursor.close()


def _alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


#: The head revision of the shipped migrations (a test checks it against alembic's own head).
HEAD_REVISION = "0003"


#: Key of the PostgreSQL advisory lock that serialises concurrent upgrades ("lwstore" in ASCII).
_UPGRADE_LOCK = 0x6C7773746F7265


def upgrade(engine_or_url: Engine | str | sa.URL, revision: str = "head") -> None:
    """Run ``alembic upgrade <revision>`` with the migration scripts shipped inside the package.

    Idempotent: an up-to-date database is left untouched, so it is safe to call on every start. No
    ``alembic.ini`` is needed. On PostgreSQL concurrent callers (two daemons starting, or
    ``livewatch db upgrade`` during a start) are serialised by an advisory lock, and DDL is transactional,
    so a failed upgrade leaves the schema as it was.

    Args:
        engine_or_url: An engine (ideally from :func:`make_engine`) or a database URL. For an in-memory
            SQLite database pass the engine: a URL gets its own engine, disposed afterwards.
        revision: Target revision; ``head`` (the default) is what the running code expects.

    Raises:
        MigrationError: the database is at a revision these scripts do not know (a newer livewatch
            migrated it).
    """
    engine = make_engine(engine_or_url) if isinstance(engine_or_url, str | sa.URL) else engine_or_url
    try:
        if revision == "head" and current_revisions(engine) == {HEAD_REVISION}:
            return  # up to date: every CLI call gets here without importing alembic (0.2-0.4 s)
        from alembic import command
        from alembic.util.exc import CommandError

        _check_known(engine)
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_UPGRADE_LOCK)))
            try:
                command.upgrade(_alembic_config(connection), revision)
            except CommandError as exc:
                raise MigrationError(f"cannot upgrade {_url(engine)} to {revision}: {exc}") from exc
    finally:
        if engine is not engine_or_url:
            engine.dispose()


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _script_directory() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config())


def _heads() -> set[str]:
    return set(_script_directory().get_heads())


def _check_known(engine: Engine) -> None:
    known = {script.revision for script in _script_directory().walk_revisions()}
    unknown = current_revisions(engine) - known
    if unknown:
        raise MigrationError(
            f"database {_url(engine)} is at revision {sorted(unknown)}, which this livewatch does not "
            f"know (it knows up to {sorted(_heads())}): it was migrated by a newer livewatch; upgrade "
            "livewatch, or restore a backup taken before that migration"
        )


def current_revisions(engine: Engine) -> set[str]:
    """Revisions recorded in the database (empty set for a database never migrated), read from
    ``alembic_version`` with plain SQL: an up-to-date store is checked without importing alembic."""
    if not sa.inspect(engine).has_table("alembic_version"):
        return set()
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT version_num FROM alembic_version"))
        return {str(version) for version in rows.scalars()}


def is_up_to_date(engine: Engine) -> bool:
    """Whether the database schema is at the head revision of the shipped migrations."""
    return current_revisions(engine) == _heads()


def check_up_to_date(engine: Engine) -> None:
    """Raise :class:`MigrationError` saying what to do unless :func:`is_up_to_date`.

    Raises:
        MigrationError: the database is behind (run ``livewatch db upgrade``) or ahead (a newer
            livewatch migrated it) of this code.
    """
    _check_known(engine)
    current, heads = current_revisions(engine), _heads()
    if current != heads:
        raise MigrationError(
            f"database {_url(engine)} is at revision {sorted(current) or 'none'}, this livewatch needs "
            f"{sorted(heads)}; run `livewatch db upgrade`"
        )
