"""Builds the runtime objects (engines, source, store, sinks, routes) from a :class:`Config`.

The environment is read here, at the composition root, and only for secrets named in the config
(``alerts.slack.token_env`` / ``webhook_env``); the values are never logged.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import sqlalchemy as sa

from alerts.routing import Route, validate_tree
from alerts.sinks.base import AlertSink
from alerts.sinks.console import ConsoleSink
from alerts.sinks.jsonl import JsonlSink
from alerts.sinks.slack import SlackSink
from alerts.sinks.webhook import WebhookSink
from monitor.config import Config, DatabaseConfig, RouteConfig
from monitor.pipeline.spec import matchers
from monitor.pipeline.tick import Monitor
from monitor.source import SqlMetricSource
from monitor.store import SqlStore, upgrade
from monitor.store import make_engine as make_store_engine

__all__ = ["build_monitor", "build_routes", "build_sinks", "make_engine", "open_store", "warehouse_source"]

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
    config: Config, env: Mapping[str, str], *, store: SqlStore | None
) -> tuple[dict[str, AlertSink], str]:
    """Sinks by receiver name, and the primary receiver (Slack when a token or webhook is set).

    Args:
        config: The loaded config.
        env: Where the secrets named in the config are read.
        store: The state store. The Slack bot sink records every delivery step in it (post, upload,
            update, thread reply: before and after each Slack call) and caches channel ids there, so a
            restarted process resumes a half-done delivery instead of repeating it. ``None`` keeps both
            in memory (a short-lived command that must not touch the state database).
    """
    sinks: dict[str, AlertSink] = {}
    slack = config.alerts.slack
    token = env.get(slack.token_env)
    webhook = env.get(slack.webhook_env)
    timeout = int(slack.timeout.total_seconds())
    if token:
        sinks[SLACK] = SlackSink.from_token(
            token, api_url=slack.api_url, timeout=timeout, steps=store, channels=store
        )
    elif webhook:
        sinks[SLACK] = WebhookSink.from_url(webhook, timeout=timeout)
    if config.alerts.console or not sinks:
        sinks[CONSOLE] = ConsoleSink(sys.stdout)
    if config.alerts.jsonl_path:
        sinks[JSONL] = JsonlSink(Path(config.alerts.jsonl_path))
    primary = SLACK if SLACK in sinks else CONSOLE
    return sinks, primary


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


def build_monitor(config: Config, env: Mapping[str, str], *, store: SqlStore | None = None) -> Monitor:
    """The pipeline of ``config``; ``store`` defaults to the configured state store (migrated).

    The same store holds the Slack sink's delivery steps and channel ids (see :func:`build_sinks`).
    """
    store = store if store is not None else open_store(config)
    sinks, primary = build_sinks(config, env, store=store)
    return Monitor(config, warehouse_source(config), store, sinks, build_routes(config, sinks, primary))
