"""Builds the runtime objects (engines, source, store, sinks, routes) from a :class:`Config`.

The environment is read here, at the composition root, and only for secrets named in the config
(``alerts.slack.token_env`` / ``webhook_env``); the values are never logged.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import structlog

from alerts.model import DeliveryStatus, Notification
from alerts.routing import Route, validate_tree
from alerts.sinks.base import AlertSink, DeliveryResult
from alerts.sinks.console import ConsoleSink
from alerts.sinks.jsonl import JsonlSink
from alerts.sinks.slack import SlackSink
from alerts.sinks.webhook import WebhookSink
from monitor.config import Config, DatabaseConfig, RouteConfig
from monitor.errors import database_reason
from monitor.pipeline.spec import matchers
from monitor.pipeline.tick import Monitor
from monitor.source import SqlMetricSource
from monitor.store import SqlStore, upgrade
from monitor.store import make_engine as make_store_engine

__all__ = [
    "ExclusiveDelivery",
    "build_monitor",
    "build_routes",
    "build_sinks",
    "make_engine",
    "open_store",
    "warehouse_source",
]

log = structlog.get_logger(__name__)

SLACK = "slack"
CONSOLE = "console"
JSONL = "jsonl"


def make_engine(database: DatabaseConfig) -> sa.Engine:
    """An engine for ``database``; ``pool_pre_ping`` so a restarted server does not fail the next tick."""
    return sa.create_engine(database.url, pool_pre_ping=True)


def warehouse_source(config: Config) -> SqlMetricSource:
    return SqlMetricSource(make_engine(config.database), schema=config.database.schema_name)


def open_store(config: Config, *, migrate: bool = True) -> SqlStore:
    """The state store, migrated to the latest schema first (safe and idempotent)."""
    engine = make_store_engine(config.state.url)
    if migrate:
        upgrade(engine)
    return SqlStore(engine)


def build_sinks(
    config: Config,
    env: Mapping[str, str],
    *,
    store: SqlStore | None,
    clock: Callable[[], datetime] | None = None,
) -> tuple[dict[str, AlertSink], str]:
    """Sinks by receiver name, and the primary receiver (Slack when a token or webhook is set).

    Args:
        config: The loaded config.
        env: Where the secrets named in the config are read.
        store: The state store. The Slack bot sink records every delivery step in it (post, upload,
            update, thread reply: before and after each Slack call) and caches channel ids there, so a
            restarted process resumes a half-done delivery instead of repeating it. ``None`` keeps both
            in memory (a short-lived command that must not touch the state database).
        clock: The time of the delivery-step records (the daemon's clock; default: the wall clock).
    """
    sinks: dict[str, AlertSink] = {}
    slack = config.alerts.slack
    token = env.get(slack.token_env)
    webhook = env.get(slack.webhook_env)
    timeout = int(slack.timeout.total_seconds())
    if token:
        sinks[SLACK] = SlackSink.from_token(
            token, api_url=slack.api_url, timeout=timeout, steps=store, channels=store, clock=clock
        )
    elif webhook:
        sinks[SLACK] = WebhookSink.from_url(webhook, timeout=timeout)
    if SLACK in sinks and store is not None:
        sinks[SLACK] = ExclusiveDelivery(sinks[SLACK], store)
    if config.alerts.console or not sinks:
        # a terminal's own width; piped output keeps one line per item for grep
        width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
        sinks[CONSOLE] = ConsoleSink(sys.stdout, width=width)
    if config.alerts.jsonl_path:
        sinks[JSONL] = JsonlSink(Path(config.alerts.jsonl_path))
    primary = SLACK if SLACK in sinks else CONSOLE
    return sinks, primary


class ExclusiveDelivery:
    """A sink that delivers one incident's notifications to a receiver in one process at a time.

    Two daemons on one state database both read the same pending notification from the outbox; the
    watermark compare-and-set keeps them from *recording* a bucket twice, not from *sending* its
    notification twice. Around each send this sink takes a lock per (incident, receiver) that every
    process sharing the state database sees (a PostgreSQL session advisory lock, released on return or
    when the process dies), then reads the outbox again: a notification another process delivered
    meanwhile is not sent, and the incident's thread is re-read (its first message may have just been
    posted). The Slack sink's step log then skips whatever the other process already did.

    SQLite databases take no lock (one daemon per SQLite state file); the re-read still happens.
    Attributes not defined here are the wrapped sink's.
    """

    #: How long a process waits for another one's delivery to the same incident before trying later.
    lock_timeout = "60s"

    def __init__(self, sink: AlertSink, store: SqlStore) -> None:
        self.sink = sink
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sink, name)

    def __repr__(self) -> str:
        return f"ExclusiveDelivery({self.sink!r})"

    def send(self, notification: Notification) -> DeliveryResult:
        """Send under the (incident, receiver) lock, unless another process delivered it meanwhile."""
        try:
            with self._lock(f"{notification.receiver}\x00{notification.incident_id}"):
                entry = next(
                    (
                        e
                        for e in self.store.entries(notification.incident_id)
                        if e.notification.id == notification.id
                    ),
                    None,
                )
                if entry is not None and entry.status is DeliveryStatus.DELIVERED:
                    log.info("alert_delivered_elsewhere", notification_id=notification.id)
                    return DeliveryResult.success(entry.channel or "", entry.ts)
                thread = self.store.thread_for(notification.incident_id, notification.receiver)
                return self.sink.send(replace(notification, thread=thread or notification.thread))
        except sa.exc.OperationalError as exc:  # lock_timeout: the other process is still at it
            reason = database_reason(exc)
            return DeliveryResult.failure(
                f"another process is delivering incident {notification.incident_id} ({reason}); will retry",
                retryable=True,
            )

    @contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        if self.store.engine.dialect.name != "postgresql":
            yield
            return
        number = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big", signed=True)
        with self.store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(sa.text(f"SET lock_timeout = '{self.lock_timeout}'"))
            connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": number})
            try:
                yield
            finally:
                connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": number})


def _route(node: RouteConfig, index: int, prefix: str) -> Route:
    name = f"{prefix}[{index}]"
    return Route(
        name=name,
        matchers=matchers(node.match),
        channel=node.channel,
        repeat_interval=node.repeat_interval,
        continue_matching=node.continue_,
        routes=tuple(_route(child, i, f"{name}.routes") for i, child in enumerate(node.routes)),
    )


def build_routes(config: Config, sinks: Mapping[str, AlertSink], primary: str) -> Route:
    """The route tree: config routes under a root that catches everything.

    The JSON-lines sink (when configured) gets every notification through a ``continue`` route; the
    primary receiver (Slack, else the console) is the fallback and the receiver config routes inherit.
    """
    children: list[Route] = []
    if JSONL in sinks:
        children.append(Route(name="jsonl", receiver=JSONL, continue_matching=True))
    if CONSOLE in sinks and primary != CONSOLE:
        children.append(Route(name="console", receiver=CONSOLE, continue_matching=True))
    children += [_route(node, i, "alerts.routes") for i, node in enumerate(config.alerts.routes)]
    children.append(Route(name="default"))
    root = Route(
        name="root",
        receiver=primary,
        channel=config.alerts.slack.default_channel,
        repeat_interval=config.alerts.repeat_interval,
        routes=tuple(children),
    )
    validate_tree(root)
    return root


def build_monitor(
    config: Config,
    env: Mapping[str, str],
    *,
    store: SqlStore | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Monitor:
    """The pipeline of ``config``; ``store`` defaults to the configured state store (migrated).

    The same store holds the Slack sink's delivery steps and channel ids, stamped by ``clock`` (see
    :func:`build_sinks`).
    """
    from monitor.experiments.evaluate import ExperimentMonitor

    store = store if store is not None else open_store(config)
    sinks, primary = build_sinks(config, env, store=store, clock=clock)
    source = warehouse_source(config)
    return Monitor(
        config,
        source,
        store,
        sinks,
        build_routes(config, sinks, primary),
        experiments=ExperimentMonitor.from_engine(config, source.engine) if config.experiments else None,
    )
