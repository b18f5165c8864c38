"""Block Kit rendering: golden payloads per incident shape, escaping of hostile names, Slack limits.

Regenerate the golden files after an intended change with ``LIVEWATCH_UPDATE_GOLDEN=1 pytest tests/alerts``
and review the diff.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from alerts.incidents import acknowledge, group_signals, resolve
from alerts.model import Notification, NotifyReason, RootCause
from alerts.render import (
    MAX_BLOCKS,
    MAX_FIELD_TEXT,
    MAX_HEADER_TEXT,
    MAX_SECTION_TEXT,
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


SHAPES: dict[str, Callable[[], Notification]] = {
    "single_metric_spike": _single,
    "multi_region": _multi_region,
    "multi_metric": _multi_metric,
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
        out.extend(e["text"] for e in block.get("elements", []))
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
    members = next(t for t in _texts(message.blocks) if t.startswith("*Members*"))
    assert members.endswith("…and 105 more")
    causes = next(t for t in _texts(message.blocks) if t.startswith("*Top root causes*"))
    assert "…and" in causes and len(causes) <= MAX_SECTION_TEXT


def test_a_long_member_list_is_cut_by_characters_too() -> None:
    signals = [signal("m" + "y" * 200 + str(i), "EU", score=6.0) for i in range(14)]
    (change,) = group_signals([], signals, T0).changes
    members = next(
        t for t in _texts(render_message(notification(change.incident)).blocks) if "*Members*" in t
    )
    assert len(members) <= MAX_SECTION_TEXT and "more" in members.splitlines()[-1]


def test_every_notification_says_why_it_was_sent() -> None:
    inc = incident(signal())
    for reason in NotifyReason:
        if reason.notify:
            message = render_message(notification(inc, reason))
            assert f"(`{reason.value}`)" in message.blocks[1]["text"]["text"]
            assert message.text.endswith(reason.describe)


def test_investigate_command_is_exact() -> None:
    note = _single()
    texts = _texts(render_message(note).blocks)
    assert "`livewatch investigate reports --region EU --at 2026-02-02T11:45Z`" in "\n".join(texts)


def test_resolved_reply_counts_clean_buckets() -> None:
    assert render_reply(_resolved()) == "*Resolved*: back to normal after 3 clean bucket(s)"
    snoozed = replace(_single(), reason=NotifyReason.REPEAT_ELAPSED)
    assert render_reply(snoozed).startswith("*Still firing (reminder)*: reports in EU 1,840 vs 1,020")
