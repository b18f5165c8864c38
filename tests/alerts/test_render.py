"""Block Kit rendering: golden payloads per incident shape, escaping of hostile names, Slack limits.

Regenerate the golden files after an intended change with ``LIVEWATCH_UPDATE_GOLDEN=1 pytest tests/alerts``
and review the diff.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from alerts.actions import ACTION_IDS, ActionKind
from alerts.incidents import acknowledge, group_signals, resolve, snooze
from alerts.model import Notification, NotifyReason, RootCause
from alerts.render import (
    MAX_BLOCKS,
    MAX_FIELD_TEXT,
    MAX_HEADER_TEXT,
    MAX_SECTION_TEXT,
    RenderOptions,
    escape,
    render_message,
    render_reply,
)
from tests.alerts.factories import BUCKET, T0, incident, notification, signal

GOLDEN = Path(__file__).parent / "golden"
HOSTILE = ["<!channel>", "<http://evil.example|click me>", "Tom & Jerry <b>", "<@U123>"]


def _single() -> Notification:
    causes = (RootCause("category=gambling", 0.62), RootCause("language=pt", 0.21))
    return notification(
        incident(signal(score=9.2, volume=12_500, observed=1_840, expected=1_020, causes=causes))
    )


def _multi_region() -> Notification:
    inc = incident(
        signal(region="EU", score=7.5, volume=9_000, observed=900, expected=600),
        signal(region="US", score=5.1, volume=7_000, observed=700, expected=560),
        signal(region="BR", score=4.4, volume=3_000, observed=300, expected=250),
    )
    return notification(inc, NotifyReason.SPREAD, now=T0 + BUCKET)


def _multi_metric() -> Notification:
    inc = incident(
        signal("reports", score=6.5, volume=8_000, causes=(RootCause("creator_tier=new", 0.55),)),
        signal("violations", score=5.0, volume=4_000, observed=80, expected=50),
        signal(
            "bans",
            score=4.2,
            volume=900,
            observed=45,
            expected=30,
            causes=(RootCause("device=android", 0.4),),
        ),
    )
    return notification(
        inc, NotifyReason.NEW_METRIC_JOINED, annotation="during policy launch (until 18:00 UTC)"
    )


def _mixed_units() -> Notification:
    """The MX shape of issue 18: a count (reports) and a ratio (per 1k views) never have their volumes added;
    a member below its rule is context, not firing."""
    hour = timedelta(hours=1)
    inc = incident(
        signal(
            "reports_per_1k_views",
            "MX",
            score=7.4,
            volume=124_109,
            observed=2.35,
            expected=1.6,
            unit="per 1k views",
            volume_unit="views",
            bucket=hour,
            threshold=4.0,
            causes=(RootCause("category=gambling", 1.11), RootCause("language=en", -0.14)),
        ),
        signal(
            "user_reports",
            "MX",
            score=5.2,
            volume=292,
            observed=292,
            expected=190,
            unit="reports",
            volume_unit="reports",
            bucket=hour,
            threshold=4.0,
        ),
        signal(
            "appeals",
            "MX",
            kind="dip",
            score=-2.1,
            volume=41,
            observed=41,
            expected=55,
            unit="appeals",
            volume_unit="appeals",
            bucket=hour,
            threshold=4.0,
        ),
    )
    return notification(inc, NotifyReason.NEW_METRIC_JOINED)


def _ratio_with_mix() -> Notification:
    causes = (
        RootCause("language=es", 0.58, mix=0.41, rate=0.17),
        RootCause("device=ios", 0.22, mix=0.02, rate=0.20),
    )
    inc = incident(
        signal(
            "violation_rate",
            "MX",
            kind="level_shift",
            score=-6.1,
            volume=40_000,
            observed=0.0123,
            expected=0.0215,
            causes=causes,
        )
    )
    return notification(inc, NotifyReason.NEW_ROOT_CAUSE)


def _resolved() -> Notification:
    inc = incident(signal())
    for step in (1, 2, 3):
        (change,) = group_signals([inc], [], T0 + step * BUCKET).changes
        inc = change.incident
    return notification(inc, NotifyReason.RESOLVED, now=T0 + 3 * BUCKET)


def _acknowledged_resolved_by_hand() -> Notification:
    acked = acknowledge(incident(signal()), "ana <admin>", T0 + BUCKET).incident
    return notification(resolve(acked, "ana", T0 + 2 * BUCKET).incident, NotifyReason.RESOLVED)


def _hostile() -> Notification:
    causes = tuple(RootCause(f"category={name}", 0.2) for name in HOSTILE)
    inc = incident(
        signal("reports<!here>", "EU&<http://x|y>", score=9.0, volume=5_000, causes=causes),
        signal("reports<!here>", "EU&<http://x|y>", segment="<!channel>", score=8.0),
    )
    return notification(inc, annotation="launch <!everyone> & co")


def _acknowledged() -> Notification:
    acked = acknowledge(incident(signal()), "@ana", T0 + BUCKET).incident
    return notification(acked, NotifyReason.ACTION, now=T0 + BUCKET) | _note("Acknowledged by @ana.")


def _snoozed() -> Notification:
    snoozed = snooze(incident(signal()), "@bo", T0 + 4 * BUCKET + BUCKET * 16, T0 + BUCKET).incident
    return notification(snoozed, NotifyReason.ACTION, now=T0 + BUCKET) | _note(
        "Snoozed by @bo until 2026-02-02 17:15 UTC."
    )


def _false_positive() -> Notification:
    inc = resolve(incident(signal()), "@cy", T0 + BUCKET).incident
    inc = inc.with_changes(false_positive=True, false_positive_by="@cy", false_positive_at=T0 + BUCKET)
    return notification(inc, NotifyReason.RESOLVED, now=T0 + BUCKET)


def _catch_up_summary() -> Notification:
    inc = _resolved().incident
    timeline = "12:00 opened: 1 signal(s)\n12:45 resolved: 3 clean bucket(s)"
    return notification(inc, NotifyReason.CATCH_UP_SUMMARY, now=T0 + 3 * BUCKET) | _note(timeline)


class _note:
    def __init__(self, text: str) -> None:
        self.text = text

    def __ror__(self, note: Notification) -> Notification:
        return replace(note, note=self.text)


SHAPES: dict[str, Callable[[], Notification]] = {
    "acknowledged_from_slack": _acknowledged,
    "snoozed_from_slack": _snoozed,
    "false_positive": _false_positive,
    "catch_up_summary": _catch_up_summary,
    "single_metric_spike": _single,
    "multi_region": _multi_region,
    "multi_metric": _multi_metric,
    "mixed_units": _mixed_units,
    "ratio_with_mix": _ratio_with_mix,
    "resolved": _resolved,
    "resolved_by_hand_after_ack": _acknowledged_resolved_by_hand,
    "hostile_segment_names": _hostile,
}


def _payload(note: Notification) -> dict[str, Any]:
    return {**render_message(note).to_dict(), "reply": render_reply(note)}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_golden_payloads(name: str) -> None:
    payload = _payload(SHAPES[name]())
    path = GOLDEN / f"{name}.json"
    if os.environ.get("LIVEWATCH_UPDATE_GOLDEN") == "1":
        path.write_text(
            json.dumps(payload, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8"
        )
    assert payload == json.loads(path.read_text(encoding="utf-8")), (
        f"{name} rendering changed; see module doc"
    )


def _texts(blocks: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for block in blocks:
        if "text" in block:
            out.append(block["text"]["text"])
        out.extend(f["text"] for f in block.get("fields", []))
        for element in block.get("elements", []):
            text = element.get("text")
            out.append(text["text"] if isinstance(text, dict) else text or "")
            out.extend(o["text"]["text"] for o in element.get("options", []))
    return out


def test_hostile_names_can_never_ping_or_link() -> None:
    note = _hostile()
    message = render_message(note)
    everything = "\n".join([message.text, render_reply(note), *_texts(message.blocks)])
    for raw in ("<!channel>", "<!here>", "<!everyone>", "<http", "<@U123>", "<b>"):
        assert raw not in everything
    assert "&lt;!channel&gt;" in everything and "Tom &amp; Jerry &lt;b&gt;" in everything
    # The only "<" left are Slack date tokens livewatch wrote itself.
    assert all(piece.startswith("!date^") for piece in everything.split("<")[1:])


def test_escape_order_does_not_double_escape() -> None:
    assert escape("a&b<c>") == "a&amp;b&lt;c&gt;"
    assert escape("&lt;") == "&amp;lt;"


def test_limits_hold_for_huge_incidents() -> None:
    signals = [
        signal(
            f"metric_{i:03d}_" + "x" * 60,
            "EU",
            score=5.0 + i / 100,
            causes=(RootCause("s" * 400 + str(i), 0.01),),
        )
        for i in range(120)
    ]
    (change,) = group_signals([], signals, T0).changes
    message = render_message(notification(change.incident))
    assert len(message.blocks) <= MAX_BLOCKS
    header = message.blocks[0]["text"]["text"]
    assert len(header) <= MAX_HEADER_TEXT and header.endswith("and 118 more spike in EU")
    for block in message.blocks:
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= MAX_SECTION_TEXT
        for f in block.get("fields", []):
            assert len(f["text"]) <= MAX_FIELD_TEXT
    members = next(t for t in _texts(message.blocks) if t.startswith("*Firing*"))
    assert members.endswith("…and 105 more")
    causes = next(t for t in _texts(message.blocks) if t.startswith("*Top root causes*"))
    assert "…and" in causes and len(causes) <= MAX_SECTION_TEXT


def test_a_long_member_list_is_cut_by_characters_too() -> None:
    signals = [signal("m" + "y" * 200 + str(i), "EU", score=6.0) for i in range(14)]
    (change,) = group_signals([], signals, T0).changes
    members = next(t for t in _texts(render_message(notification(change.incident)).blocks) if "*Firing*" in t)
    assert len(members) <= MAX_SECTION_TEXT and "more" in members.splitlines()[-1]


def test_every_notification_says_why_it_was_sent() -> None:
    inc = incident(signal())
    for reason in NotifyReason:
        if reason.notify:
            message = render_message(notification(inc, reason))
            assert f"*Why this message:* {reason.describe} · " in message.blocks[1]["text"]["text"]
            if reason is not NotifyReason.RESOLVED:
                assert message.text.endswith(reason.describe)


def test_investigate_command_is_exact() -> None:
    note = _single()
    texts = _texts(render_message(note).blocks)
    assert "`livewatch investigate reports --region EU --at 2026-02-02T11:45Z`" in "\n".join(texts)


def test_resolved_reply_counts_clean_buckets() -> None:
    assert render_reply(_resolved()) == "*Resolved*: back to normal after 3 clean bucket(s)"
    snoozed = replace(_single(), reason=NotifyReason.REPEAT_ELAPSED)
    assert render_reply(snoozed).startswith("*Still firing (reminder)*: reports in EU 1,840 vs 1,020")


def _actions(note: Notification, options: RenderOptions | None = None) -> dict[str, Any]:
    block = render_message(note, options or RenderOptions()).blocks[-1]
    assert block["type"] == "actions"
    return {e["action_id"]: e for e in block["elements"]}


def test_every_open_incident_message_has_all_buttons_carrying_the_incident_id() -> None:
    note = _single()
    buttons = _actions(note)
    assert list(buttons) == [ACTION_IDS[k] for k in ActionKind]
    incident_id = note.incident_id
    assert all(b.get("value") == incident_id for k, b in buttons.items() if k != "livewatch_snooze")
    options = buttons["livewatch_snooze"]["options"]
    assert [o["value"] for o in options] == [f"{incident_id}|{d}" for d in ("1h", "4h", "24h")]


def test_buttons_follow_the_state() -> None:
    assert ACTION_IDS[ActionKind.ACKNOWLEDGE] not in _actions(_acknowledged())
    assert list(_actions(_resolved())) == ["livewatch_false_positive", "livewatch_investigate"]
    assert list(_actions(_false_positive())) == ["livewatch_investigate"]


def test_investigate_can_be_a_link() -> None:
    button = _actions(_single(), RenderOptions(investigate_url="https://lw.example/i/{incident_id}"))[
        "livewatch_investigate"
    ]
    assert button["url"] == "https://lw.example/i/reports%2FEU%2F20260202T120000Z"


def test_no_buttons_when_disabled() -> None:
    assert render_message(_single(), RenderOptions(actions=False)).blocks[-1]["type"] != "actions"


def test_status_says_who_acted() -> None:
    texts = "\n".join(_texts(render_message(_acknowledged()).blocks))
    assert "acknowledged by @ana" in texts
    assert "snoozed by @bo until" in "\n".join(_texts(render_message(_snoozed()).blocks))
    fp = render_message(_false_positive())
    assert fp.blocks[0]["text"]["text"].startswith(":no_entry_sign: NOT AN INCIDENT")
    assert "marked not an incident by @cy" in "\n".join(_texts(fp.blocks))
    assert render_reply(_acknowledged()) == "Acknowledged by @ana."


# -- one vocabulary ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "word"),
    [
        ("spike", "spike"),  # plain kinds read as themselves
        ("dip", "dip"),
        ("level_shift", "level shift"),  # never the internal name with an underscore
    ],
)
def test_kind_words_are_the_same_in_slack_and_the_console(kind: str, word: str) -> None:
    from alerts.model import kind_word

    note = notification(incident(signal(kind=kind)))
    message = render_message(note)
    assert kind_word(kind) == word
    assert f" {word} in EU" in message.blocks[0]["text"]["text"]
    assert f" {word} in EU" in message.text
    assert kind not in message.blocks[0]["text"]["text"] or kind == word


@pytest.mark.parametrize(
    ("reason", "shown", "hidden"),
    [
        (NotifyReason.FIRST, "new incident", "`first`"),  # the reason in words, not its enum value
        (NotifyReason.RESOLVED, "resolved", "(`resolved`)"),
        (NotifyReason.NEW_METRIC_JOINED, "another metric joined", "new_metric_joined"),
    ],
)
def test_why_this_message_is_words_only(reason: NotifyReason, shown: str, hidden: str) -> None:
    message = render_message(notification(incident(signal()), reason))
    why = message.blocks[1]["text"]["text"]
    assert shown in why and hidden not in why


def test_resolved_fallback_does_not_repeat_itself() -> None:
    message = render_message(_resolved())
    assert message.text.startswith("[RESOLVED]") and "resolved" not in message.text.split("]", 1)[1]


def test_title_kind_is_stable_when_a_spike_becomes_a_level_shift() -> None:
    first = incident(signal(kind="spike"))
    (change,) = group_signals(
        [first], [signal(kind="level_shift", start=T0 - BUCKET, end=T0 + BUCKET)], T0 + BUCKET
    ).changes
    title = render_message(notification(change.incident, NotifyReason.GREW)).blocks[0]["text"]["text"]
    assert "level shift in EU" in title and "anomaly" not in title


def test_volumes_of_different_units_are_never_added() -> None:
    message = render_message(_mixed_units())
    text = json.dumps(message.blocks)
    assert "124,401" not in text and "124,442" not in text
    assert "124,109 views" in text and "292 reports at stake" in text
    firing, context = message.blocks[3]["text"]["text"], message.blocks[4]["text"]["text"]
    assert firing.startswith("*Firing* (2)") and "appeals" not in firing
    assert context.startswith("*Context* (1, below their rule now)") and "fires at ±4" in context
