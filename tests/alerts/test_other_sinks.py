"""Webhook (over HTTP to the fake), console and JSON-lines sinks."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from alerts.model import NotifyReason, RootCause
from alerts.render import render_message
from alerts.sinks.console import ConsoleSink, format_notification
from alerts.sinks.jsonl import JsonlSink
from alerts.sinks.webhook import WebhookSink
from tests.alerts.factories import incident, notification, signal
from tests.fakeslack import FakeSlack

NOTE = notification(incident(signal(causes=(RootCause("lang=es", 0.5, mix=0.3, rate=0.2),))))


def test_webhook_posts_the_rendered_message(fake_slack: FakeSlack) -> None:
    sink = WebhookSink.from_url(fake_slack.webhook_url, timeout=2, backoff_factor=0.001)
    result = sink.send(NOTE)
    assert result.ok and result.ts is None and result.channel == "webhook"
    (posted,) = fake_slack.webhook_messages
    assert posted["blocks"] == render_message(NOTE).blocks
    assert "127.0.0.1" not in repr(sink)


def test_webhook_5xx_is_retryable_and_404_is_not(fake_slack: FakeSlack) -> None:
    sink = WebhookSink.from_url(fake_slack.webhook_url, timeout=2, max_retries=0)
    fake_slack.fail_next(1, status=502, error="bad_gateway", methods={"webhook"})
    down = sink.send(NOTE)
    assert not down.ok and down.retryable
    gone = WebhookSink.from_url(fake_slack.webhook_url + "/revoked", timeout=2, max_retries=0).send(NOTE)
    assert not gone.ok and not gone.retryable
    assert gone.error is not None and "create a new webhook URL" in gone.error


def test_console_is_plain_readable_text_without_control_characters() -> None:
    stream = io.StringIO()
    hostile = notification(incident(signal(region="EU\x1b[2J")), NotifyReason.FIRST)
    assert ConsoleSink(stream).send(hostile).ok
    assert ConsoleSink(stream).send(NOTE).ok
    text = stream.getvalue()
    assert "\x1b" not in text and "EU?[2J" in text
    # the words of the Slack message: kind in words, the reason without its enum value
    assert "[WARNING] reports spike in EU (new incident) -> #tns-alerts" in text
    assert "first" not in text.split("\n")[0]
    assert "causes (share of the deviation; above 100% when other segments moved the other way):" in text
    assert "    lang=es: 50% (mix 30%, rate 20%)" in text
    assert "investigate: livewatch investigate reports --region EU --at 2026-02-02T11:45Z" in text


def test_jsonl_appends_one_replayable_line_per_notification(tmp_path: Path) -> None:
    path = tmp_path / "out" / "alerts.jsonl"
    sink = JsonlSink(path)
    assert sink.send(NOTE).ok and sink.send(NOTE).ok
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    record = json.loads(lines[0])
    assert record["notification"]["id"] == NOTE.id
    assert record["message"]["blocks"] == render_message(NOTE).blocks


@pytest.mark.parametrize("width", [80, 100, 200])
def test_console_wraps_at_spaces_to_the_terminal_and_keeps_the_command_whole(width: int) -> None:
    long = notification(
        incident(
            signal(metric="report_rate_per_1k_views_of_live_streams", region="experiment/autoplay_next/a"),
            signal(metric="violation_rate_of_reviewed_streams", region="experiment/autoplay_next/a"),
        )
    )
    stream = io.StringIO()
    assert ConsoleSink(stream, width=width).send(long).ok
    lines = stream.getvalue().rstrip("\n").splitlines()
    command = long.incident.headline.investigate
    # every line fits, but for a command or an id longer than the terminal: copied whole from its own line
    assert all(len(line) <= width or line == command or len(line.split()[-1]) > width - 12 for line in lines)
    words = " ".join(stream.getvalue().split())  # nothing lost or split inside a word
    assert words == " ".join(format_notification(long).split())
    assert command and any(line.strip() in (command, f"investigate: {command}") for line in lines)


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (95088.4, "views", "95,088 views"),  # large: whole units, never an exponent
        (481.63, "reports", "481.6 reports"),  # 4 significant digits
        (4.1583, "per 1k views", "4.158 per 1k views"),
        (2.5, "", "2.5"),  # no unit, no trailing space
    ],
)
def test_console_numbers_read_like_the_slack_message(value: float, unit: str, text: str) -> None:
    from alerts.sinks.console import _with_unit

    assert _with_unit(value, unit) == text
