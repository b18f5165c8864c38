"""SlackSink over the real slack_sdk WebClient, talking HTTP to the loopback fake Slack."""

from __future__ import annotations

from dataclasses import replace
from http.client import RemoteDisconnected
from urllib.error import URLError

import pytest
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.state import RetryState

from alerts.incidents import group_signals
from alerts.model import Notification, NotifyReason, SlackThread
from alerts.render import render_message
from alerts.sinks.slack import METADATA_EVENT_TYPE, SafeConnectionErrorRetryHandler, SlackSink
from tests.alerts.factories import BUCKET, T0, chart, incident, notification, signal
from tests.fakeslack import FakeSlack

CHANNEL = "#tns-alerts"


def make_sink(
    fake: FakeSlack, *, token: str | None = None, timeout: int = 2, charts: bool = True
) -> SlackSink:
    return SlackSink.from_token(
        token or fake.token,
        api_url=fake.api_url,
        timeout=timeout,
        max_retries=2,
        max_retry_after=1.0,
        backoff_factor=0.01,
        upload_charts=charts,
    )


@pytest.fixture
def first() -> Notification:
    return notification(incident(signal(chart=chart(12, spike_at=10))), channel=CHANNEL)


def test_first_notification_posts_once_and_uploads_the_chart_into_the_thread(
    fake_slack: FakeSlack, first: Notification
) -> None:
    result = make_sink(fake_slack).send(first)

    assert result.ok and result.warnings == ()
    assert result.channel == fake_slack.channel_id(CHANNEL)
    (message,) = fake_slack.top_level(CHANNEL)
    assert message["ts"] == result.ts
    assert message["blocks"] == render_message(first).blocks
    assert message["metadata"] == {
        "event_type": METADATA_EVENT_TYPE,
        "event_payload": {"incident_id": first.incident_id, "notification_id": first.id, "step": "post"},
    }
    (upload,) = fake_slack.files()
    assert upload["thread_ts"] == result.ts and upload["channel"] == result.channel
    assert upload["data"].startswith(b"\x89PNG")
    assert {r.headers["authorization"] for r in fake_slack.requests if r.method != "upload"} == {
        f"Bearer {fake_slack.token}"
    }


def test_later_notifications_edit_the_message_and_reply_in_its_thread(
    fake_slack: FakeSlack, first: Notification
) -> None:
    sink = make_sink(fake_slack, charts=False)
    posted = sink.send(first)
    assert posted.ts is not None and posted.channel is not None
    thread = SlackThread(posted.channel, posted.ts)
    grown = incident(signal(), signal(region="US"))
    spread = replace(notification(grown, NotifyReason.SPREAD, now=T0 + BUCKET), thread=thread)
    result = sink.send(spread)

    assert result.ok and (result.channel, result.ts) == (thread.channel, thread.ts)
    (message,) = fake_slack.top_level(CHANNEL)
    assert message["blocks"] == render_message(spread).blocks
    assert message["edited"]["count"] == 1
    (reply,) = fake_slack.replies(CHANNEL, thread.ts)
    assert reply["text"] == "*Spread to another region*: regions now EU, US"


def test_resolution_edits_to_resolved_and_replies(fake_slack: FakeSlack, first: Notification) -> None:
    sink = make_sink(fake_slack, charts=False)
    posted = sink.send(first)
    assert posted.ts is not None and posted.channel is not None
    inc = first.incident
    for step in (1, 2, 3):
        (change,) = group_signals([inc], [], T0 + step * BUCKET).changes
        inc = change.incident
    done = replace(notification(inc, NotifyReason.RESOLVED), thread=SlackThread(posted.channel, posted.ts))
    assert sink.send(done).ok
    (message,) = fake_slack.top_level(CHANNEL)
    assert message["blocks"][0]["text"]["text"].startswith(":white_check_mark: RESOLVED")
    assert [r["text"] for r in fake_slack.replies(CHANNEL, posted.ts)] == [
        "*Resolved*: back to normal after 3 clean bucket(s)"
    ]


def test_429_is_retried_after_retry_after_then_succeeds(fake_slack: FakeSlack, first: Notification) -> None:
    fake_slack.rate_limit_next(1, retry_after=0, methods={"chat.postMessage"})
    result = make_sink(fake_slack, charts=False).send(first)
    assert result.ok
    assert len(fake_slack.calls("chat.postMessage", include_faults=True)) == 2
    assert len(fake_slack.top_level(CHANNEL)) == 1


def test_a_long_retry_after_goes_back_to_the_outbox_instead_of_blocking(
    fake_slack: FakeSlack, first: Notification
) -> None:
    fake_slack.rate_limit_next(1, retry_after=120, methods={"chat.postMessage"})
    result = make_sink(fake_slack, charts=False).send(first)
    assert not result.ok and result.retryable
    assert result.error is not None and "ratelimited" in result.error and "Retry-After 120" in result.error
    assert fake_slack.top_level(CHANNEL) == []


def test_5xx_within_the_retry_budget_succeeds(fake_slack: FakeSlack, first: Notification) -> None:
    fake_slack.fail_next(2, status=503, error="service_unavailable")
    assert make_sink(fake_slack, charts=False).send(first).ok
    assert len(fake_slack.top_level(CHANNEL)) == 1


def test_slack_down_beyond_the_retry_budget_is_a_retryable_failure(
    fake_slack: FakeSlack, first: Notification
) -> None:
    fake_slack.fail_next(10, status=500)
    result = make_sink(fake_slack, charts=False).send(first)
    assert not result.ok and result.retryable
    assert result.error == f"Slack chat.postMessage to {CHANNEL}: internal_error (HTTP 500); will retry"


def test_a_hanging_slack_times_out_as_retryable(fake_slack: FakeSlack, first: Notification) -> None:
    fake_slack.hang_next(1, seconds=10, methods={"chat.postMessage"})
    result = make_sink(fake_slack, timeout=1, charts=False).send(first)
    assert not result.ok and result.retryable
    assert result.error is not None and "could not reach Slack" in result.error


@pytest.mark.parametrize(
    ("break_channel", "code", "fix"),
    [
        (FakeSlack.remove_channel, "channel_not_found", "does not exist or the bot cannot see it"),
        (FakeSlack.kick_bot, "not_in_channel", "invite it"),
    ],
    ids=["channel_not_found", "not_in_channel"],
)
def test_permanent_channel_errors_are_not_retryable_and_say_the_fix(
    fake_slack: FakeSlack, first: Notification, break_channel: object, code: str, fix: str
) -> None:
    break_channel(fake_slack, CHANNEL)  # type: ignore[operator]
    result = make_sink(fake_slack).send(first)
    assert not result.ok and not result.retryable
    assert result.error is not None
    assert code in result.error and CHANNEL in result.error and fix in result.error


def test_bad_token_is_permanent_and_never_shown(fake_slack: FakeSlack, first: Notification) -> None:
    secret = "xoxb-wrong-secret"
    sink = make_sink(fake_slack, token=secret)
    result = sink.send(first)
    assert not result.ok and not result.retryable
    assert result.error is not None and "invalid_auth" in result.error and "SLACK_BOT_TOKEN" in result.error
    check = sink.check()
    assert not check.ok and "invalid_auth" in check.detail
    assert secret not in f"{result} {check} {sink!r}"


def test_check_reports_the_bot_identity(fake_slack: FakeSlack) -> None:
    check = make_sink(fake_slack).check()
    assert check.ok and check.detail == "authenticated as livewatch in team Livewatch Test"
    assert len(fake_slack.calls("auth.test")) == 1


def test_a_permanently_failed_chart_upload_is_a_warning_not_a_resend(
    fake_slack: FakeSlack, first: Notification
) -> None:
    fake_slack.error_next(1, "missing_scope", methods={"files.getUploadURLExternal"})
    result = make_sink(fake_slack).send(first)
    assert result.ok and len(result.warnings) == 1 and "chart upload failed" in result.warnings[0]
    assert len(fake_slack.top_level(CHANNEL)) == 1 and fake_slack.files() == []


def test_a_retryable_chart_upload_failure_is_retried_without_reposting(
    fake_slack: FakeSlack, first: Notification
) -> None:
    sink = make_sink(fake_slack)
    fake_slack.error_next(1, "internal_error", methods={"files.getUploadURLExternal"})
    failed = sink.send(first)
    assert not failed.ok and failed.retryable
    result = sink.send(replace(first, attempts=1))
    assert result.ok and result.warnings == ()
    assert len(fake_slack.top_level(CHANNEL)) == 1 and len(fake_slack.files()) == 1


def test_retry_after_an_unrecorded_post_edits_instead_of_duplicating(
    fake_slack: FakeSlack, first: Notification
) -> None:
    posted = make_sink(fake_slack, charts=False).send(first)  # the process dies before recording ...
    channel_id = fake_slack.channel_id(CHANNEL)
    again = replace(first, channel=channel_id, attempts=1)  # ... so the same notification comes back
    sink = make_sink(fake_slack, charts=False)  # to a restarted process without step records
    result = sink.send(again)

    assert result.ok and result.ts == posted.ts
    assert len(fake_slack.top_level(CHANNEL)) == 1
    assert fake_slack.replies(CHANNEL, posted.ts or "") == []  # it was this very message: no reply
    assert len(fake_slack.calls("conversations.history")) == 1

    later = replace(notification(first.incident, NotifyReason.REPEAT_ELAPSED), channel=channel_id, attempts=1)
    assert make_sink(fake_slack, charts=False).send(later).ts == posted.ts
    assert len(fake_slack.top_level(CHANNEL)) == 1
    assert len(fake_slack.replies(CHANNEL, posted.ts or "")) == 1


def test_first_attempt_does_not_read_history(fake_slack: FakeSlack, first: Notification) -> None:
    make_sink(fake_slack, charts=False).send(first)
    assert fake_slack.calls("conversations.history") == []


def test_a_failed_upload_post_is_retried_later_not_dropped(
    fake_slack: FakeSlack, first: Notification
) -> None:
    sink = make_sink(fake_slack)
    fake_slack.fail_next(1, status=500, methods={"upload"})
    failed = sink.send(first)
    assert not failed.ok and failed.retryable and "will retry" in (failed.error or "")
    assert sink.send(replace(first, attempts=1)).ok
    assert len(fake_slack.top_level(CHANNEL)) == 1 and len(fake_slack.files()) == 1


@pytest.mark.parametrize(
    ("method", "error", "retried"),
    [
        ("chat.update", RemoteDisconnected("dropped"), True),  # idempotent: retry as slack_sdk does
        ("chat.postMessage", RemoteDisconnected("dropped"), False),  # may have been accepted: look it up
        ("files.completeUploadExternal", URLError(ConnectionResetError()), False),
        ("chat.postMessage", URLError(ConnectionRefusedError()), True),  # never reached Slack
    ],
)
def test_connection_errors_are_retried_only_when_repeating_is_safe(
    method: str, error: Exception, retried: bool
) -> None:
    handler = SafeConnectionErrorRetryHandler(max_retry_count=1)
    request = HttpRequest(method="POST", url=f"https://slack.com/api/{method}", headers={})
    assert handler.can_retry(state=RetryState(), request=request, error=error) is retried
