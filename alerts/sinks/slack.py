"""Slack bot sink: one living message per incident, edited as the incident changes, exactly once.

``SlackSink(client, *, render_options=RenderOptions(), upload_charts=True, history_lookback=200,
steps=None, channels=None, clock=None)``
``SlackSink.from_token(token, *, api_url="https://slack.com/api/", timeout=10, max_retries=2,
max_retry_after=30.0, backoff_factor=0.5, upload_charts=True, steps=None, channels=None) -> SlackSink``
``SlackSink.send(notification) -> DeliveryResult``
``SlackSink.check() -> SlackCheck`` (``auth.test`` + the token's scopes, for ``livewatch check-config``)
``SlackUserGroups(client, *, ttl=timedelta(minutes=5), clock=None)`` -- the
:class:`alerts.ports.UserGroupDirectory` over ``usergroups.users.list``.

Delivery of one notification is a short sequence of idempotent steps (:mod:`alerts.steps`), each recorded
through the :class:`alerts.ports.StepLog` (``steps``) before and after its Slack call:

* no message yet for the incident (``notification.thread is None``): ``post`` -- ``chat.postMessage``
  with the Block Kit from :func:`alerts.render.render_message` and message *metadata*
  ``{"event_type": "livewatch_notification", "event_payload": {"notification_id", "step": "post",
  "incident_id"}}``; then ``upload`` -- the chart PNG with ``files_upload_v2(thread_ts=...)`` under a
  deterministic file name; Slack's ``ts`` and the ``file_id`` are recorded before moving on;
* a message exists: ``update`` (``chat.update``, idempotent) then ``reply`` (a thread reply with the same
  kind of metadata, ``step: "reply"``). Never a second top-level message.

Recovery: a step recorded ``started`` but not ``done`` may have reached Slack before the process died. The
sink looks for it -- posts in ``conversations.history``, replies and chart files in
``conversations.replies`` of the thread, both with ``include_all_metadata`` and the channel **id** -- and
adopts what it finds instead of repeating it (an earlier post of *another* notification of the same
incident is adopted as the incident's thread, then edited). Channel names (``#livewatch-alerts``) are
resolved to ids once with ``conversations.list`` (paginated) and cached through the
:class:`alerts.ports.ChannelDirectory` (``channels``); a post by name also teaches the directory the id.

Scopes (:data:`SCOPES`): ``chat:write`` is required. Without ``channels:read`` / ``groups:read`` names cannot
be resolved before the first post; without ``channels:history`` / ``groups:history`` recovery cannot look
anything up. Then the sink *re-sends* the step (at most one duplicate, never a lost alert) and says so in
the result's warnings; :meth:`SlackSink.check` lists the missing scopes and what each costs.

Connection errors: slack_sdk's connection-error retry is not used for the non-idempotent calls
(``chat.postMessage``, ``files.completeUploadExternal``): a reset after Slack accepted the request would
repeat it. The step stays ``started`` and the next delivery looks it up first.

HTTP 429 (honouring ``Retry-After`` up to ``max_retry_after`` seconds) and 500/503 are retried inside the
call by slack_sdk's retry handlers; what still fails is returned as a retryable failure for the outbox to
retry later. Permanent errors (``invalid_auth``, ``channel_not_found``, ``not_in_channel``, ...) are returned
as non-retryable with a message naming the fix. The token is never logged or included in messages.

Without a ``steps`` log the sink keeps step records in memory (lost on restart) and treats a notification
the outbox says was attempted before (``attempts > 0``) as possibly delivered: it looks it up first.
"""

from __future__ import annotations

import hashlib
import random
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.client import RemoteDisconnected
from typing import Any
from urllib.error import URLError

import structlog
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError, SlackRequestError
from slack_sdk.http_retry import RetryHandler
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.jitter import Jitter
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from alerts.model import Notification, SlackThread
from alerts.ports import ChannelDirectory, StepLog
from alerts.render import RenderOptions, escape, render_message, render_reply
from alerts.sinks.base import DeliveryResult
from alerts.steps import (
    LookupOutcome,
    StepAction,
    StepKind,
    StepRecord,
    StepStatus,
    decide_step,
    last_records,
    plan_steps,
)

__all__ = [
    "LEGACY_METADATA_EVENT_TYPE",
    "METADATA_EVENT_TYPE",
    "NON_IDEMPOTENT_METHODS",
    "PERMANENT_ERRORS",
    "REQUIRED_SCOPES",
    "SCOPES",
    "CappedRateLimitRetryHandler",
    "ProportionalJitter",
    "SafeConnectionErrorRetryHandler",
    "SlackCheck",
    "SlackSink",
    "SlackUserGroups",
    "chart_filename",
    "classify_error",
    "retry_handlers",
]

log = structlog.get_logger(__name__)

METADATA_EVENT_TYPE = "livewatch_notification"
#: Metadata event type of messages posted by livewatch before per-step metadata (still recognised).
LEGACY_METADATA_EVENT_TYPE = "livewatch_incident"

#: Bot token scopes livewatch uses, with what each one is for and what happens without it.
SCOPES: dict[str, str] = {
    "chat:write": "post and edit incident messages and thread notes (required)",
    "channels:read": "resolve public channel names to ids (conversations.list); without it the id is only "
    "learnt from the first post, so a crash before that cannot be recovered by lookup",
    "groups:read": "resolve private channel names to ids (conversations.list)",
    "channels:history": "crash recovery in public channels (conversations.history / .replies); without it "
    "an interrupted post, reply or upload is sent again: at most one duplicate, never lost",
    "groups:history": "crash recovery in private channels (as channels:history)",
    "files:write": "upload the chart into the incident's thread; without it messages go out without charts",
    "usergroups:read": "authorise Slack actions by user group (usergroups.users.list)",
}
#: Without these nothing is delivered.
REQUIRED_SCOPES = frozenset({"chat:write"})

#: Calls whose repetition would repeat their effect: never retried blindly after a connection error.
NON_IDEMPOTENT_METHODS = ("chat.postMessage", "files.completeUploadExternal")

#: Slack error codes that will not go away by retrying, with the fix to apply.
PERMANENT_ERRORS: dict[str, str] = {
    "invalid_auth": "the Slack token is invalid; set SLACK_BOT_TOKEN to the bot's xoxb- token",
    "not_authed": "no Slack token was sent; set SLACK_BOT_TOKEN",
    "account_inactive": "the Slack token belongs to a deactivated bot or user; reinstall the app",
    "token_revoked": "the Slack token was revoked; reinstall the app and update SLACK_BOT_TOKEN",
    "token_expired": "the Slack token expired; rotate it and update SLACK_BOT_TOKEN",
    "missing_scope": "the Slack app lacks a scope (see `livewatch check-config`: chat:write, channels:read, "
    "channels:history, files:write, ...); add it and reinstall the app",
    "channel_not_found": "channel {channel} does not exist or the bot cannot see it; fix the route's channel "
    "or invite the bot to the private channel",
    "not_in_channel": "the bot is not a member of channel {channel}; invite it (/invite @livewatch)",
    "is_archived": "channel {channel} is archived; route to another channel",
    "restricted_action": "the workspace forbids the bot from posting in {channel}",
    "message_not_found": "the incident's message in {channel} was deleted; it cannot be edited",
    "cant_update_message": "the bot may not edit the incident's message in {channel}",
    "edit_window_closed": "Slack no longer allows editing the incident's message in {channel}",
    "invalid_blocks": "Slack rejected the message blocks (a livewatch rendering bug; please report it)",
    "invalid_blocks_format": "Slack rejected the block format (a livewatch rendering bug; please report it)",
    "msg_too_long": "the message is too long for Slack (a livewatch rendering bug; please report it)",
}

#: Slack error codes meaning "try again later".
RETRYABLE_ERRORS = frozenset(
    {"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)


class CappedRateLimitRetryHandler(RateLimitErrorRetryHandler):
    """slack_sdk's 429 handler, but only when ``Retry-After`` is at most ``max_wait`` seconds.

    A longer wait would block the daemon; the failure goes back to the outbox, which retries later.
    """

    def __init__(self, max_retry_count: int = 2, max_wait: float = 30.0) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait = max_wait

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or not super()._can_retry(
            state=state, request=request, response=response, error=error
        ):
            return False
        for key, value in response.headers.items():
            if key.lower() == "retry-after":
                raw = value[0] if isinstance(value, list) else value
                try:
                    return float(raw) <= self.max_wait
                except (TypeError, ValueError):
                    return True
        return True


class ProportionalJitter(Jitter):
    """Sleep between 1x and 2x the backoff interval (slack_sdk's default adds up to a fixed second)."""

    def recalculate(self, duration: float) -> float:
        return duration * (1.0 + random.random())


class SafeConnectionErrorRetryHandler(ConnectionErrorRetryHandler):
    """slack_sdk's connection-error retry, except for :data:`NON_IDEMPOTENT_METHODS` when the request may
    have reached Slack (only a refused connection is retried for those): their outcome is unknown, and
    the outbox step machine looks it up before sending again."""

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if not super()._can_retry(state=state, request=request, response=response, error=error):
            return False
        if not any(request.url.endswith("/" + m) for m in NON_IDEMPOTENT_METHODS):
            return True
        reason = error.reason if isinstance(error, URLError) else error
        return isinstance(reason, (ConnectionRefusedError, socket.gaierror))


def retry_handlers(
    *, max_retries: int = 2, max_retry_after: float = 30.0, backoff_factor: float = 0.5
) -> list[RetryHandler]:
    """slack_sdk retry handlers for 429 (capped ``Retry-After``), 500/503 and connection resets.

    5xx and connection errors back off ``backoff_factor * 2**attempt`` seconds (1x-2x jitter).
    """
    backoff = BackoffRetryIntervalCalculator(backoff_factor=backoff_factor, jitter=ProportionalJitter())
    return [
        CappedRateLimitRetryHandler(max_retry_count=max_retries, max_wait=max_retry_after),
        ServerErrorRetryHandler(max_retry_count=max_retries, interval_calculator=backoff),
        SafeConnectionErrorRetryHandler(max_retry_count=max_retries, interval_calculator=backoff),
    ]


def classify_error(exc: Exception, *, method: str, channel: str) -> DeliveryResult:
    """Turn an exception from a Slack call into a failed :class:`DeliveryResult` (retryable or not)."""
    if isinstance(exc, SlackApiError):
        code = str(exc.response.get("error") or "unknown_error")
        status = exc.response.status_code
        if status == 429 or code in RETRYABLE_ERRORS or status >= 500:
            retry_after = exc.response.headers.get("Retry-After") or exc.response.headers.get("retry-after")
            wait = f" (Retry-After {retry_after} s)" if retry_after else ""
            return DeliveryResult.failure(
                f"Slack {method} to {channel}: {code} (HTTP {status}){wait}; will retry", retryable=True
            )
        fix = PERMANENT_ERRORS.get(code)
        if fix is not None:
            return DeliveryResult.failure(
                f"Slack {method} to {channel}: {code}: {fix.format(channel=channel)}", retryable=False
            )
        return DeliveryResult.failure(
            f"Slack {method} to {channel}: {code} (HTTP {status}); not retried", retryable=False
        )
    if isinstance(exc, (TimeoutError, URLError, ConnectionError, OSError, RemoteDisconnected)):
        return DeliveryResult.failure(
            f"could not reach Slack for {method} to {channel} ({type(exc).__name__}: {exc}); will retry",
            retryable=True,
        )
    if isinstance(exc, SlackClientError):
        return DeliveryResult.failure(f"Slack {method} to {channel}: {exc}; not retried", retryable=False)
    raise exc


def _utc_now() -> datetime:
    return datetime.now(UTC)


_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{6,}$")


def chart_filename(notification: Notification) -> str:
    """Deterministic chart file name of a notification (how a retried upload is recognised)."""
    digest = hashlib.sha256(notification.id.encode("utf-8")).hexdigest()[:12]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", notification.incident_id) + f"-{digest}.png"


def _metadata(notification: Notification, step: StepKind) -> dict[str, Any]:
    return {
        "event_type": METADATA_EVENT_TYPE,
        "event_payload": {
            "notification_id": notification.id,
            "step": step.value,
            "incident_id": notification.incident_id,
        },
    }


def _header(headers: Any, name: str) -> str | None:
    for key, value in dict(headers or {}).items():
        if str(key).lower() == name:
            return str(value[0] if isinstance(value, list) else value)
    return None


@dataclass(frozen=True)
class SlackCheck:
    """Result of :meth:`SlackSink.check`.

    Attributes:
        ok: The token works and has the required scopes.
        detail: One line for ``check-config``.
        scopes: The token's scopes (``x-oauth-scopes``), None when Slack did not say.
        missing: Scopes of :data:`SCOPES` the token lacks, in :data:`SCOPES` order.
        warnings: What each missing optional scope costs (from :data:`SCOPES`).
    """

    ok: bool
    detail: str
    scopes: frozenset[str] | None = None
    missing: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())


class _Failed(Exception):
    """A step failed; carries the delivery result to return."""

    def __init__(self, result: DeliveryResult) -> None:
        super().__init__(result.error)
        self.result = result


class _MemorySteps:
    def __init__(self) -> None:
        self._records: list[StepRecord] = []

    def record_step(self, record: StepRecord) -> None:
        self._records.append(record)

    def steps_for(self, notification_id: str) -> list[StepRecord]:
        return [r for r in self._records if r.notification_id == notification_id]


class _MemoryChannels:
    def __init__(self) -> None:
        self._ids: dict[str, str] = {}

    def get_channel_id(self, name: str) -> str | None:
        return self._ids.get(name)

    def put_channel_id(self, name: str, channel_id: str) -> None:
        self._ids[name] = channel_id


class SlackSink:
    """Delivers notifications to Slack as one living message per incident (see the module docstring)."""

    def __init__(
        self,
        client: WebClient,
        *,
        render_options: RenderOptions = RenderOptions(),  # noqa: B008 - frozen value object
        upload_charts: bool = True,
        history_lookback: int = 200,
        steps: StepLog | None = None,
        channels: ChannelDirectory | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.client = client
        self.render_options = render_options
        self.upload_charts = upload_charts
        self.history_lookback = history_lookback
        self.steps: StepLog = steps if steps is not None else _MemorySteps()
        self.channels: ChannelDirectory = channels if channels is not None else _MemoryChannels()
        self._durable_steps = steps is not None
        self._clock = clock or _utc_now
        self._listed = False

    @classmethod
    def from_token(
        cls,
        token: str,
        *,
        api_url: str = "https://slack.com/api/",
        timeout: int = 10,
        max_retries: int = 2,
        max_retry_after: float = 30.0,
        backoff_factor: float = 0.5,
        upload_charts: bool = True,
        steps: StepLog | None = None,
        channels: ChannelDirectory | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> SlackSink:
        """A sink over a real ``slack_sdk.WebClient`` with livewatch's retry handlers."""
        client = WebClient(
            token=token,
            base_url=api_url,
            timeout=timeout,
            retry_handlers=retry_handlers(
                max_retries=max_retries, max_retry_after=max_retry_after, backoff_factor=backoff_factor
            ),
        )
        return cls(client, upload_charts=upload_charts, steps=steps, channels=channels, clock=clock)

    def __repr__(self) -> str:  # never show the token
        return f"SlackSink(base_url={self.client.base_url!r}, upload_charts={self.upload_charts})"

    # -- check-config -----------------------------------------------------------------------------
    def check(self) -> SlackCheck:
        """Call ``auth.test``: is the token valid, who is the bot, which of :data:`SCOPES` are missing."""
        try:
            response = self.client.auth_test()
        except (SlackApiError, SlackClientError, OSError) as exc:
            failed = classify_error(exc, method="auth.test", channel="-")
            return SlackCheck(False, failed.error or str(exc))
        who = f"authenticated as {response.get('user')} in team {response.get('team')}"
        raw = _header(response.headers, "x-oauth-scopes")
        if raw is None:
            return SlackCheck(True, who)
        scopes = frozenset(s.strip() for s in raw.split(",") if s.strip())
        missing = tuple(s for s in SCOPES if s not in scopes)
        warnings = tuple(f"missing scope {s}: {SCOPES[s]}" for s in missing)
        ok = scopes >= REQUIRED_SCOPES
        detail = who + (f"; missing scopes: {', '.join(missing)}" if missing else "")
        if not ok:
            detail += " (chat:write is required: add it and reinstall the app)"
        return SlackCheck(ok, detail, scopes, missing, warnings)

    # -- delivery ---------------------------------------------------------------------------------
    def send(self, notification: Notification) -> DeliveryResult:
        """Run the notification's steps; never raises for Slack or network failures."""
        warnings: list[str] = []
        records = last_records(self.steps.steps_for(notification.id))
        attempted = notification.attempts > 0 and not self._durable_steps
        try:
            if StepKind.POST in records or notification.thread is None:
                thread, own = self._first_message(notification, records, attempted, warnings)
                if own:
                    return DeliveryResult.success(thread.channel, thread.ts, tuple(warnings))
                # the incident's message was posted by an earlier notification: edit it instead
            else:
                thread = notification.thread
            self._later_message(notification, thread, records, attempted, warnings)
            return DeliveryResult.success(thread.channel, thread.ts, tuple(warnings))
        except _Failed as failed:
            return failed.result

    def _record(
        self,
        notification: Notification,
        step: StepKind,
        status: StepStatus,
        *,
        channel: str | None = None,
        ts: str | None = None,
        file_id: str | None = None,
        detail: str = "",
    ) -> None:
        record = StepRecord(notification.id, step, status, self._clock(), channel, ts, file_id, detail)
        self.steps.record_step(record)

    def _call(
        self,
        notification: Notification,
        step: StepKind,
        call: Callable[[], Any],
        *,
        method: str,
        channel: str,
    ) -> Any:
        """Run one Slack call of ``step``: a Slack "no" is recorded ``failed``; an unknown outcome
        (connection lost, timeout) leaves the ``started`` record for the next attempt to look up."""
        try:
            return call()
        except SlackApiError as exc:
            failed = classify_error(exc, method=method, channel=channel)
            self._record(notification, step, StepStatus.FAILED, channel=channel, detail=failed.error or "")
            raise _Failed(failed) from exc
        except SlackRequestError as exc:  # e.g. the file upload POST answered non-200: nothing was shared
            failed = DeliveryResult.failure(f"Slack {method} to {channel}: {exc}; will retry", retryable=True)
            self._record(notification, step, StepStatus.FAILED, channel=channel, detail=str(exc))
            raise _Failed(failed) from exc
        except (SlackClientError, OSError, RemoteDisconnected) as exc:
            raise _Failed(classify_error(exc, method=method, channel=channel)) from exc

    # first message: post + upload
    def _first_message(
        self,
        notification: Notification,
        records: dict[StepKind, StepRecord],
        attempted: bool,
        warnings: list[str],
    ) -> tuple[SlackThread, bool]:
        """Post (+ upload) the incident's message; returns its thread and False when the message found in
        Slack belongs to another notification of the incident (then the caller edits it)."""
        channel_id = self._channel_id(notification.channel, warnings)
        last = records.get(StepKind.POST)
        decision = decide_step(StepKind.POST, last, attempted_before=attempted)
        thread: SlackThread | None = None
        if decision.action is StepAction.SKIP and last is not None:
            if last.status is StepStatus.SKIPPED:  # adopted another notification's post
                return SlackThread(last.channel or "", last.ts or ""), False
            thread = SlackThread(last.channel or "", last.ts or "")
        if decision.action is StepAction.LOOKUP:
            started_in = last.channel if last is not None and _CHANNEL_ID.match(last.channel or "") else None
            outcome, found, same = self._find_post(notification, channel_id or started_in, warnings)
            decision = decide_step(StepKind.POST, last, attempted_before=attempted, lookup=outcome)
            self._log(notification, decision)
            if decision.action is StepAction.ADOPT and found is not None:
                status = StepStatus.DONE if same else StepStatus.SKIPPED
                detail = "" if same else "the incident's message was posted by an earlier notification"
                self._record(
                    notification, StepKind.POST, status, channel=found.channel, ts=found.ts, detail=detail
                )
                if not same:
                    return found, False
                thread = found
            elif outcome is LookupOutcome.UNAVAILABLE:
                warnings.append(
                    f"could not check {notification.channel} for an earlier post; posting again "
                    "(at most one duplicate)"
                )
        if decision.action is StepAction.RUN:
            thread = self._post(notification, channel_id)
        assert thread is not None
        self._upload(notification, thread, records, attempted, warnings)
        return thread, True

    def _post(self, notification: Notification, channel_id: str | None) -> SlackThread:
        message = render_message(notification, self.render_options)
        target = channel_id or notification.channel
        self._record(notification, StepKind.POST, StepStatus.STARTED, channel=target)
        response = self._call(
            notification,
            StepKind.POST,
            lambda: self.client.chat_postMessage(
                channel=target,
                text=message.text,
                blocks=message.blocks,
                metadata=_metadata(notification, StepKind.POST),
                unfurl_links=False,
                unfurl_media=False,
            ),
            method="chat.postMessage",
            channel=notification.channel,
        )
        channel, ts = str(response["channel"]), str(response["ts"])
        self._record(notification, StepKind.POST, StepStatus.DONE, channel=channel, ts=ts)
        if channel_id is None and not _CHANNEL_ID.match(notification.channel):
            self.channels.put_channel_id(notification.channel.lstrip("#"), channel)
        return SlackThread(channel, ts)

    def _upload(
        self,
        notification: Notification,
        thread: SlackThread,
        records: dict[StepKind, StepRecord],
        attempted: bool,
        warnings: list[str],
    ) -> None:
        head = notification.incident.headline
        has_chart = self.upload_charts and head.chart is not None
        if StepKind.UPLOAD not in plan_steps(has_thread=False, has_chart=has_chart) or head.chart is None:
            return
        last = records.get(StepKind.UPLOAD)
        decision = decide_step(StepKind.UPLOAD, last, attempted_before=attempted)
        filename = chart_filename(notification)
        if decision.action is StepAction.LOOKUP:
            outcome, message = self._find_in_thread(
                thread, lambda m: any(f.get("name") == filename for f in m.get("files") or [])
            )
            decision = decide_step(StepKind.UPLOAD, last, attempted_before=attempted, lookup=outcome)
            self._log(notification, decision)
            if decision.action is StepAction.ADOPT and message is not None:
                file_id = next(f.get("id") for f in message["files"] if f.get("name") == filename)
                self._record(
                    notification,
                    StepKind.UPLOAD,
                    StepStatus.DONE,
                    channel=thread.channel,
                    ts=thread.ts,
                    file_id=file_id,
                )
                return
            if outcome is LookupOutcome.UNAVAILABLE:
                warnings.append("could not check the thread for an earlier chart upload; uploading again")
        if decision.action is not StepAction.RUN:
            return
        from alerts.chart import render_chart  # Matplotlib is imported only when a chart is drawn

        try:
            png = render_chart(head.chart, title=f"{head.metric} in {head.region}")
        except Exception as exc:  # a bad series must not stop the message
            self._record(notification, StepKind.UPLOAD, StepStatus.SKIPPED, detail=str(exc))
            warnings.append(f"chart upload failed: {type(exc).__name__}: {exc}")
            return
        self._record(notification, StepKind.UPLOAD, StepStatus.STARTED, channel=thread.channel, ts=thread.ts)
        try:
            response = self._call(
                notification,
                StepKind.UPLOAD,
                lambda: self.client.files_upload_v2(
                    channel=thread.channel,
                    thread_ts=thread.ts,
                    content=png,
                    filename=filename,
                    title=escape(f"{head.metric} in {head.region}"),
                ),
                method="files_upload_v2",
                channel=thread.channel,
            )
        except _Failed as failed:
            if failed.result.retryable:
                raise
            self._record(notification, StepKind.UPLOAD, StepStatus.SKIPPED, detail=failed.result.error or "")
            log.warning(
                "slack_chart_upload_failed", incident_id=notification.incident_id, error=failed.result.error
            )
            warnings.append(f"chart upload failed: {failed.result.error}")
            return
        files = response.get("files") or [{}]
        self._record(
            notification,
            StepKind.UPLOAD,
            StepStatus.DONE,
            channel=thread.channel,
            ts=thread.ts,
            file_id=files[0].get("id"),
        )

    # later messages: update + reply
    def _later_message(
        self,
        notification: Notification,
        thread: SlackThread,
        records: dict[StepKind, StepRecord],
        attempted: bool,
        warnings: list[str],
    ) -> None:
        update = decide_step(StepKind.UPDATE, records.get(StepKind.UPDATE), attempted_before=attempted)
        if update.action is StepAction.RUN:
            message = render_message(notification, self.render_options)
            self._record(
                notification, StepKind.UPDATE, StepStatus.STARTED, channel=thread.channel, ts=thread.ts
            )
            self._call(
                notification,
                StepKind.UPDATE,
                lambda: self.client.chat_update(
                    channel=thread.channel, ts=thread.ts, text=message.text, blocks=message.blocks
                ),
                method="chat.update",
                channel=thread.channel,
            )
            self._record(notification, StepKind.UPDATE, StepStatus.DONE, channel=thread.channel, ts=thread.ts)
        last = records.get(StepKind.REPLY)
        reply = decide_step(StepKind.REPLY, last, attempted_before=attempted)
        if reply.action is StepAction.LOOKUP:
            outcome, found = self._find_in_thread(
                thread, lambda m: self._is_step(m, notification, StepKind.REPLY)
            )
            reply = decide_step(StepKind.REPLY, last, attempted_before=attempted, lookup=outcome)
            self._log(notification, reply)
            if reply.action is StepAction.ADOPT and found is not None:
                self._record(
                    notification, StepKind.REPLY, StepStatus.DONE, channel=thread.channel, ts=str(found["ts"])
                )
                return
            if outcome is LookupOutcome.UNAVAILABLE:
                warnings.append("could not check the thread for an earlier reply; replying again")
        if reply.action is not StepAction.RUN:
            return
        self._record(notification, StepKind.REPLY, StepStatus.STARTED, channel=thread.channel, ts=thread.ts)
        try:
            response = self._call(
                notification,
                StepKind.REPLY,
                lambda: self.client.chat_postMessage(
                    channel=thread.channel,
                    thread_ts=thread.ts,
                    text=render_reply(notification),
                    metadata=_metadata(notification, StepKind.REPLY),
                    unfurl_links=False,
                    unfurl_media=False,
                ),
                method="chat.postMessage (thread reply)",
                channel=thread.channel,
            )
        except _Failed as failed:
            if failed.result.retryable:
                raise
            self._record(notification, StepKind.REPLY, StepStatus.SKIPPED, detail=failed.result.error or "")
            warnings.append(failed.result.error or "thread reply failed")
            return
        self._record(
            notification, StepKind.REPLY, StepStatus.DONE, channel=thread.channel, ts=str(response["ts"])
        )

    # -- lookups ----------------------------------------------------------------------------------
    @staticmethod
    def _log(notification: Notification, decision: Any) -> None:
        log.info(
            "slack_step_recovery",
            notification_id=notification.id,
            step=decision.step.value,
            action=decision.action.value,
            reason=decision.reason.value,
        )

    @staticmethod
    def _is_step(message: dict[str, Any], notification: Notification, step: StepKind) -> bool:
        meta: dict[str, Any] = message.get("metadata") or {}
        payload = meta.get("event_payload") or {}
        return (
            meta.get("event_type") == METADATA_EVENT_TYPE
            and payload.get("notification_id") == notification.id
            and payload.get("step") == step.value
        )

    def _channel_id(self, channel: str, warnings: list[str]) -> str | None:
        """The channel's id: as given, cached, or from ``conversations.list`` (once per process)."""
        if _CHANNEL_ID.match(channel):
            return channel
        name = channel.lstrip("#")
        cached = self.channels.get_channel_id(name)
        if cached is not None or self._listed:
            return cached
        cursor: str | None = None
        try:
            while True:
                response = self.client.conversations_list(
                    types="public_channel,private_channel", exclude_archived=True, limit=200, cursor=cursor
                )
                for item in response.get("channels") or []:
                    self.channels.put_channel_id(str(item["name"]), str(item["id"]))
                cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
                if not cursor:
                    break
        except Exception as exc:
            code = exc.response.get("error") if isinstance(exc, SlackApiError) else type(exc).__name__
            if code == "missing_scope":
                self._listed = True  # will not change in this process: do not ask for every message
            warnings.append(
                f"could not resolve {channel} to a channel id ({code}; needs channels:read / groups:read); "
                "posting by name"
            )
            return None
        self._listed = True
        return self.channels.get_channel_id(name)

    def _find_post(
        self, notification: Notification, channel_id: str | None, warnings: list[str]
    ) -> tuple[LookupOutcome, SlackThread | None, bool]:
        """Look for the incident's top-level message in the channel's recent history."""
        if channel_id is None:
            return LookupOutcome.UNAVAILABLE, None, False
        try:
            response = self.client.conversations_history(
                channel=channel_id, limit=self.history_lookback, include_all_metadata=True
            )
        except Exception as exc:
            code = exc.response.get("error") if isinstance(exc, SlackApiError) else type(exc).__name__
            warnings.append(f"could not read the history of {notification.channel} ({code})")
            return LookupOutcome.UNAVAILABLE, None, False
        ours: list[tuple[bool, str]] = []  # (posted by this very notification, ts), newest first
        for message in response.get("messages") or []:
            meta: dict[str, Any] = message.get("metadata") or {}
            payload = meta.get("event_payload") or {}
            if meta.get("event_type") not in (METADATA_EVENT_TYPE, LEGACY_METADATA_EVENT_TYPE):
                continue
            if payload.get("incident_id") == notification.incident_id:
                ours.append((payload.get("notification_id") == notification.id, str(message["ts"])))
        if not ours:
            return LookupOutcome.ABSENT, None, False
        same, ts = max(ours, key=lambda hit: hit[0])  # this notification's own post first, else the newest
        log.info(
            "slack_recovered_thread", incident_id=notification.incident_id, ts=ts, same_notification=same
        )
        return LookupOutcome.FOUND, SlackThread(channel_id, ts), same

    def _find_in_thread(
        self, thread: SlackThread, match: Callable[[dict[str, Any]], bool]
    ) -> tuple[LookupOutcome, dict[str, Any] | None]:
        try:
            response = self.client.conversations_replies(
                channel=thread.channel, ts=thread.ts, include_all_metadata=True, limit=200
            )
        except Exception:
            return LookupOutcome.UNAVAILABLE, None
        for message in response.get("messages") or []:
            if message.get("ts") != thread.ts and match(message):
                return LookupOutcome.FOUND, message
        return LookupOutcome.ABSENT, None


class SlackUserGroups:
    """:class:`alerts.ports.UserGroupDirectory` over ``usergroups.users.list`` (needs ``usergroups:read``),
    cached for ``ttl``. A failed lookup is logged and counts as "no members" (refuse, never allow)."""

    def __init__(
        self,
        client: WebClient,
        *,
        ttl: timedelta = timedelta(minutes=5),
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.client = client
        self.ttl = ttl
        self._clock = clock or _utc_now
        self._cache: dict[str, tuple[datetime, frozenset[str]]] = {}

    def members(self, usergroup_id: str) -> frozenset[str]:
        now = self._clock()
        hit = self._cache.get(usergroup_id)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        try:
            response = self.client.usergroups_users_list(usergroup=usergroup_id)
        except Exception as exc:
            log.warning("slack_usergroup_lookup_failed", usergroup=usergroup_id, error=str(exc))
            return frozenset()
        users = frozenset(str(u) for u in response.get("users") or [])
        self._cache[usergroup_id] = (now, users)
        return users
