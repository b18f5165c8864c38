"""Slack bot sink: one living message per incident, edited as the incident changes.

``SlackSink(client, *, render_options=RenderOptions(), upload_charts=True, history_lookback=200)``
``SlackSink.from_token(token, *, api_url="https://slack.com/api/", timeout=10, max_retries=2,
max_retry_after=30.0, backoff_factor=0.5) -> SlackSink``
``SlackSink.send(notification) -> DeliveryResult``
``SlackSink.check() -> SlackCheck`` (``auth.test``, for ``livewatch check-config``)

Delivery of one notification:

* no message yet for the incident (``notification.thread is None``): ``chat.postMessage`` with the Block
  Kit from :func:`alerts.render.render_message` and Slack message *metadata*
  ``{"event_type": "livewatch_incident", "event_payload": {"incident_id", "notification_id"}}``, then the
  chart PNG is uploaded into the thread with ``files_upload_v2(thread_ts=...)`` (a failed upload is a
  warning: the message is out and must not be re-sent);
* a message exists: ``chat.update`` of that message, then a short thread reply (``render_reply``);
  a resolution is the same with the resolved rendering. Never a second top-level message.
* crash recovery: when an earlier attempt started (``notification.attempts > 0``) but no thread was
  recorded, the process may have died between Slack's answer and the outbox write. The sink then reads
  the channel's recent history (``conversations.history`` with ``include_all_metadata``) for a message
  whose metadata names this incident and, if found, edits it instead of posting a duplicate. (This needs
  the channel *id* and the ``channels:history`` scope; if the lookup fails the sink posts and warns.)

HTTP 429 (honouring ``Retry-After`` up to ``max_retry_after`` seconds), 500/503 and connection resets are
retried inside the call by slack_sdk's retry handlers; what still fails is returned as a retryable
failure for the outbox to retry later. Permanent errors (``invalid_auth``, ``channel_not_found``,
``not_in_channel``, ...) are returned as non-retryable with a message naming the fix. The token is never
logged or included in messages; the caller reads it (e.g. from ``SLACK_BOT_TOKEN``).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any
from urllib.error import URLError

import structlog
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
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
from alerts.render import RenderOptions, escape, render_message, render_reply
from alerts.sinks.base import DeliveryResult

__all__ = [
    "METADATA_EVENT_TYPE",
    "PERMANENT_ERRORS",
    "CappedRateLimitRetryHandler",
    "ProportionalJitter",
    "SlackCheck",
    "SlackSink",
    "classify_error",
    "retry_handlers",
]

log = structlog.get_logger(__name__)

METADATA_EVENT_TYPE = "livewatch_incident"

#: Slack error codes that will not go away by retrying, with the fix to apply.
PERMANENT_ERRORS: dict[str, str] = {
    "invalid_auth": "the Slack token is invalid; set SLACK_BOT_TOKEN to the bot's xoxb- token",
    "not_authed": "no Slack token was sent; set SLACK_BOT_TOKEN",
    "account_inactive": "the Slack token belongs to a deactivated bot or user; reinstall the app",
    "token_revoked": "the Slack token was revoked; reinstall the app and update SLACK_BOT_TOKEN",
    "token_expired": "the Slack token expired; rotate it and update SLACK_BOT_TOKEN",
    "missing_scope": "the Slack app lacks a scope (needs chat:write, files:write, channels:history); "
    "reinstall it",
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
        ConnectionErrorRetryHandler(max_retry_count=max_retries, interval_calculator=backoff),
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
    if isinstance(exc, (TimeoutError, URLError, ConnectionError, OSError)):
        return DeliveryResult.failure(
            f"could not reach Slack for {method} to {channel} ({type(exc).__name__}: {exc}); will retry",
            retryable=True,
        )
    if isinstance(exc, SlackClientError):
        return DeliveryResult.failure(f"Slack {method} to {channel}: {exc}; not retried", retryable=False)
    raise exc


@dataclass(frozen=True)
class SlackCheck:
    """Result of :meth:`SlackSink.check`."""

    ok: bool
    detail: str


class SlackSink:
    """Delivers notifications to Slack as one living message per incident (see the module docstring)."""

    def __init__(
        self,
        client: WebClient,
        *,
        render_options: RenderOptions = RenderOptions(),  # noqa: B008 - frozen value object
        upload_charts: bool = True,
        history_lookback: int = 200,
    ) -> None:
        self.client = client
        self.render_options = render_options
        self.upload_charts = upload_charts
        self.history_lookback = history_lookback

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
        return cls(client, upload_charts=upload_charts)

    def __repr__(self) -> str:  # never show the token
        return f"SlackSink(base_url={self.client.base_url!r}, upload_charts={self.upload_charts})"

    def check(self) -> SlackCheck:
        """Call ``auth.test``: is the token valid, and who is the bot."""
        try:
            response = self.client.auth_test()
        except (SlackApiError, SlackClientError, OSError) as exc:
            failed = classify_error(exc, method="auth.test", channel="-")
            return SlackCheck(False, failed.error or str(exc))
        return SlackCheck(True, f"authenticated as {response.get('user')} in team {response.get('team')}")

    def send(self, notification: Notification) -> DeliveryResult:
        """Post or edit the incident's message; never raises for Slack or network failures."""
        thread = notification.thread
        warnings: tuple[str, ...] = ()
        already_posted = False
        if thread is None and notification.attempts > 0:
            thread, already_posted, warning = self._find_posted(notification)
            warnings = (warning,) if warning else ()
        if thread is None:
            return self._post(notification, warnings)
        return self._edit(notification, thread, warnings, reply=not already_posted)

    # -- steps ----------------------------------------------------------------------------------
    def _post(self, notification: Notification, warnings: tuple[str, ...]) -> DeliveryResult:
        message = render_message(notification, self.render_options)
        metadata = {
            "event_type": METADATA_EVENT_TYPE,
            "event_payload": {"incident_id": notification.incident_id, "notification_id": notification.id},
        }
        try:
            response = self.client.chat_postMessage(
                channel=notification.channel,
                text=message.text,
                blocks=message.blocks,
                metadata=metadata,
                unfurl_links=False,
                unfurl_media=False,
            )
        except Exception as exc:
            return classify_error(exc, method="chat.postMessage", channel=notification.channel)
        channel, ts = str(response["channel"]), str(response["ts"])
        upload_warning = self._upload_chart(notification, channel, ts)
        if upload_warning:
            warnings = (*warnings, upload_warning)
        return DeliveryResult.success(channel, ts, warnings)

    def _edit(
        self, notification: Notification, thread: SlackThread, warnings: tuple[str, ...], *, reply: bool
    ) -> DeliveryResult:
        message = render_message(notification, self.render_options)
        try:
            self.client.chat_update(
                channel=thread.channel, ts=thread.ts, text=message.text, blocks=message.blocks
            )
        except Exception as exc:
            return classify_error(exc, method="chat.update", channel=thread.channel)
        if not reply:
            return DeliveryResult.success(thread.channel, thread.ts, warnings)
        try:
            self.client.chat_postMessage(
                channel=thread.channel,
                thread_ts=thread.ts,
                text=render_reply(notification),
                unfurl_links=False,
                unfurl_media=False,
            )
        except Exception as exc:
            failed = classify_error(exc, method="chat.postMessage (thread reply)", channel=thread.channel)
            if failed.retryable:
                return failed
            warnings = (*warnings, failed.error or "thread reply failed")
        return DeliveryResult.success(thread.channel, thread.ts, warnings)

    def _upload_chart(self, notification: Notification, channel: str, ts: str) -> str | None:
        head = notification.incident.headline
        if not self.upload_charts or head.chart is None:
            return None
        from alerts.chart import render_chart  # Matplotlib is imported only when a chart is drawn

        try:
            png = render_chart(head.chart, title=f"{head.metric} in {head.region}")
            filename = re.sub(r"[^A-Za-z0-9_.-]+", "_", notification.incident_id) + ".png"
            self.client.files_upload_v2(
                channel=channel,
                thread_ts=ts,
                content=png,
                filename=filename,
                title=escape(f"{head.metric} in {head.region}"),
            )
        except Exception as exc:
            log.warning("slack_chart_upload_failed", incident_id=notification.incident_id, error=str(exc))
            return f"chart upload failed: {type(exc).__name__}: {exc}"
        return None

    def _find_posted(self, notification: Notification) -> tuple[SlackThread | None, bool, str | None]:
        """Find a message an earlier, unrecorded attempt posted for this incident (crash recovery).

        Returns the thread (or None), whether that message was posted by this very notification (then
        no thread reply is due), and a warning when history could not be read.
        """
        try:
            response = self.client.conversations_history(
                channel=notification.channel, limit=self.history_lookback, include_all_metadata=True
            )
        except Exception as exc:
            warning = f"could not check {notification.channel} for an earlier post ({exc}); posting anew"
            return None, False, warning
        channel = str(response.get("channel") or notification.channel)
        messages: list[dict[str, Any]] = response.get("messages", []) or []
        for message in messages:
            meta: dict[str, Any] = message.get("metadata") or {}
            payload = meta.get("event_payload") or {}
            if meta.get("event_type") != METADATA_EVENT_TYPE:
                continue
            if payload.get("incident_id") == notification.incident_id:
                log.info("slack_recovered_thread", incident_id=notification.incident_id, ts=message.get("ts"))
                same = payload.get("notification_id") == notification.id
                return SlackThread(channel, str(message["ts"])), same, None
        return None, False, None
