"""Actions from Slack inside the daemon: the listener, wired to the state store and the alert engine.

:func:`build_listener(config, env, store, monitor, clock=...) -> Listener | None` builds what
``alerts.slack.interactivity`` asks for (``None`` when it is off); :func:`run_daemon
<monitor.daemon.scheduler.run_daemon>` starts it before the jobs and closes it first on SIGTERM. ``livewatch
run --once`` and replays never listen.

Modes (``alerts.slack.interactivity.mode``):

* ``auto`` (default): ``socket`` when the app-level token variable (``app_token_env``, default
  ``SLACK_APP_TOKEN``) is set, else ``off``, so a daemon without a Slack app keeps running as before;
* ``socket``: :class:`alerts.interactivity.SocketModeInteractivity` with the app-level ``xapp-`` token (no
  public URL needed);
* ``http``: :class:`alerts.interactivity.HttpInteractivity` on ``host:port`` + ``path``, every request
  checked against the app's signing secret (``signing_secret_env``, default ``SLACK_SIGNING_SECRET``);
* ``off``: no listener (the message buttons then do nothing).

Secrets are read from the environment only, here at the composition root, and never logged. A mode that
needs a variable that is not set fails at start-up with a :class:`~monitor.errors.ConfigError` naming it.

Who may act (:class:`ActionGate`): the Slack user ids in ``allowed_users``, the members of the user groups
in ``allowed_usergroups`` (looked up with ``usergroups.users.list`` through the bot token, cached five
minutes; a failed lookup refuses) and anyone acting on a message in one of ``allowed_channels`` (ids such as
``C0123``, or ``#names`` resolved through the channel ids the Slack sink recorded when posting). **All three
empty (the default) means nobody**: everyone gets an ephemeral reply saying how to configure it. Opening
actions to "anyone who can see the alert channel" is one explicit line (``allowed_channels:
["#livewatch-alerts"]``), never a default.

Each action (:meth:`ActionService.handle`): the policy and user-group members are resolved first (network,
outside any lock), then under the pipeline's :attr:`~monitor.pipeline.tick.Monitor.alert_lock` (so a
tick's alert stage and a click never interleave) :func:`alerts.engine.handle_action` runs in one store
transaction (incident, lifecycle events, snooze silences, false positives and the action log commit
together), then :func:`alerts.outbox.deliver_pending` edits the living message and posts the thread note
through the outbox (exactly once, via the sink's recorded steps). The action's lifecycle events
(``acknowledged``, ``snoozed``, ``resolved``, ``false_positive``) are what ``livewatch incidents show`` lists
and what time to acknowledge / resolve are measured on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, Protocol

import structlog
from slack_sdk import WebClient

from alerts.actions import ActionPolicy, ActionResult, IncidentAction, resolve_group_members
from alerts.engine import AlertRepos, handle_action
from alerts.interactivity import HttpInteractivity, SocketModeInteractivity
from alerts.outbox import deliver_pending
from alerts.ports import ChannelDirectory, UserGroupDirectory
from alerts.sinks.slack import SlackUserGroups
from monitor.config import Config, InteractivityConfig
from monitor.errors import ConfigError
from monitor.pipeline.tick import Monitor
from monitor.store import SqlStore

__all__ = [
    "ActionGate",
    "ActionService",
    "Listener",
    "ListenerMode",
    "build_listener",
    "listener_mode",
]

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]
ListenerMode = Literal["socket", "http", "off"]
#: How long a daemon stopping waits for an action being applied.
STOP_WAIT = timedelta(seconds=10)


class Listener(Protocol):
    """A running transport (:mod:`alerts.interactivity`)."""

    def start(self) -> object: ...

    def close(self) -> None: ...


def listener_mode(settings: InteractivityConfig, env: Mapping[str, str]) -> ListenerMode:
    """The transport to run: ``auto`` resolves to ``socket`` when the app token variable is set, else ``off``.

    Raises:
        ConfigError: ``socket`` without the app token variable, or ``http`` without the signing secret.
    """
    where = "alerts.slack.interactivity"
    if settings.mode == "auto":
        return "socket" if env.get(settings.app_token_env) else "off"
    if settings.mode == "socket" and not env.get(settings.app_token_env):
        raise ConfigError(
            [
                f"{where}.mode: socket needs the app-level token (xapp-..., scope connections:write) in "
                f"${settings.app_token_env}; export it, or set mode: http or off"
            ]
        )
    if settings.mode == "http" and not env.get(settings.signing_secret_env):
        raise ConfigError(
            [
                f"{where}.mode: http needs the Slack app's signing secret in ${settings.signing_secret_env}; "
                "export it, or set mode: socket or off"
            ]
        )
    return settings.mode


@dataclass
class ActionGate:
    """Who may act: the configured policy, with ``#channel`` names resolved to ids at each action.

    Attributes:
        users: Slack user ids.
        usergroups: Slack user group ids.
        channels: Channel ids or ``#names``.
        channel_ids: Where names are resolved (the store's Slack channel cache).
        directory: User group members (``None``: groups have no members, so they allow nobody).
    """

    users: frozenset[str] = frozenset()
    usergroups: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()
    channel_ids: ChannelDirectory | None = None
    directory: UserGroupDirectory | None = None

    @classmethod
    def of(
        cls,
        settings: InteractivityConfig,
        *,
        channel_ids: ChannelDirectory | None = None,
        directory: UserGroupDirectory | None = None,
    ) -> ActionGate:
        return cls(
            frozenset(settings.allowed_users),
            frozenset(settings.allowed_usergroups),
            frozenset(settings.allowed_channels),
            channel_ids,
            directory,
        )

    @property
    def empty(self) -> bool:
        return not (self.users or self.usergroups or self.channels)

    def policy(self) -> ActionPolicy:
        """The :class:`~alerts.actions.ActionPolicy` now (names without a recorded id are left out)."""
        ids: set[str] = set()
        for channel in self.channels:
            if not channel.startswith("#"):
                ids.add(channel)
                continue
            found = self.channel_ids.get_channel_id(channel.lstrip("#")) if self.channel_ids else None
            if found:
                ids.add(found)
            else:
                log.warning("slack_action_channel_unresolved", channel=channel)
        return ActionPolicy(self.users, self.usergroups, frozenset(ids))

    def members(self, policy: ActionPolicy) -> dict[str, frozenset[str]]:
        return resolve_group_members(policy, self.directory)


@dataclass
class ActionService:
    """Applies one person's action (module docstring); the transports' ``handle`` callback.

    Args:
        store: The whole state store (self-monitoring incidents can be acted on too).
        monitor: Routes, windows, engine settings, sinks and the alert lock of the pipeline.
        gate: Who may act.
        clock: Wall clock (UTC-aware).
    """

    store: SqlStore
    monitor: Monitor
    gate: ActionGate
    clock: Clock
    results: list[ActionResult] = field(default_factory=list)

    def handle(self, action: IncidentAction) -> ActionResult:
        policy = self.gate.policy()
        members = self.gate.members(policy)
        with self.monitor.alert_lock:
            now = self.clock()
            with self.store.transaction() as tx:
                result = handle_action(
                    action,
                    now,
                    repos=AlertRepos(tx, tx, tx, actions=tx, false_positives=tx),
                    routes=self.monitor.routes,
                    policy=policy,
                    group_members=members,
                    windows=self.monitor.windows,
                    config=self.monitor.engine_config,
                )
            if result.notification_ids:
                deliver_pending(self.store, self.monitor.sinks, now)
        self.results.append(result)
        del self.results[:-100]
        return result

    def wait_idle(self, timeout: timedelta = STOP_WAIT) -> bool:
        """Wait (at most ``timeout``) for an action being applied; True when none is."""
        lock = self.monitor.alert_lock
        if lock.acquire(timeout=timeout.total_seconds()):
            lock.release()
            return True
        return False


@dataclass
class RunningListener:
    """A transport and the service behind it; :meth:`close` stops taking clicks, then lets the one being
    applied finish."""

    mode: ListenerMode
    transport: SocketModeInteractivity | HttpInteractivity
    service: ActionService
    _started: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str | None:
        return self.transport.url if isinstance(self.transport, HttpInteractivity) else None

    def start(self) -> RunningListener:
        self.transport.start()
        self._started.set()
        log.info("slack_actions_listening", mode=self.mode, url=self.url)
        return self

    def close(self) -> None:
        if not self._started.is_set():
            return
        self._started.clear()
        self.transport.close()
        if not self.service.wait_idle():
            log.warning("slack_action_still_running_at_stop")
        log.info("slack_actions_stopped", mode=self.mode)


def _directory(config: Config, env: Mapping[str, str], usergroups: Collection[str]) -> SlackUserGroups | None:
    token = env.get(config.alerts.slack.token_env)
    if not usergroups:
        return None
    if not token:
        log.warning(
            "slack_usergroups_without_bot_token",
            hint=f"allowed_usergroups need the bot token in ${config.alerts.slack.token_env}",
        )
        return None
    timeout = int(config.alerts.slack.timeout.total_seconds())
    return SlackUserGroups(WebClient(token=token, base_url=config.alerts.slack.api_url, timeout=timeout))


def build_listener(
    config: Config,
    env: Mapping[str, str],
    store: SqlStore,
    monitor: Monitor,
    *,
    clock: Clock,
) -> RunningListener | None:
    """The listener ``alerts.slack.interactivity`` asks for (not started), or ``None`` when it is off.

    Raises:
        ConfigError: a mode whose secret variable is not set (see :func:`listener_mode`).
    """
    settings = config.alerts.slack.interactivity
    mode = listener_mode(settings, env)
    if mode == "off":
        return None
    gate = ActionGate.of(
        settings, channel_ids=store, directory=_directory(config, env, settings.allowed_usergroups)
    )
    if gate.empty:
        log.warning(
            "slack_actions_allow_nobody",
            hint="set alerts.slack.interactivity.allowed_users, allowed_usergroups or allowed_channels",
        )
    if not env.get(config.alerts.slack.token_env):
        log.warning(
            "slack_actions_without_bot_token",
            hint="actions are applied, but no Slack message can follow without the bot token",
        )
    service = ActionService(store, monitor, gate, clock)
    transport: SocketModeInteractivity | HttpInteractivity
    if mode == "socket":
        transport = SocketModeInteractivity(
            env[settings.app_token_env], service.handle, api_url=config.alerts.slack.api_url
        )
    else:
        transport = HttpInteractivity(
            env[settings.signing_secret_env],
            service.handle,
            clock=clock,
            host=settings.host,
            port=settings.port,
            path=settings.path,
        )
    return RunningListener(mode, transport, service)
