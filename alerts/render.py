"""Slack Block Kit for an incident notification. Pure and deterministic (no clock, no I/O).

``render_message(notification, options=RenderOptions()) -> SlackMessage``
    The living top-level message: header (severity, metrics, kind, regions), why this message was sent,
    a fields section (severity, status, metric(s), region(s), observed vs expected, change, volume at
    stake of the largest member with its unit (volumes of different units are never added), start as a bucket
    start with the bucket size), firing members and, apart, members below their rule (context), the
    root-cause summary (with mix vs rate for ratio metrics), the
    exact ``livewatch investigate`` command(s), people's actions and window annotations; plus a fallback
    ``text`` for notifications and clients without blocks.

    The last block is an ``actions`` block (:func:`actions_block`): Acknowledge, a Snooze select (1 h /
    4 h / 24 h), Resolve, Not an incident (false positive, with a confirmation) and Investigate (a link
    when ``RenderOptions.investigate_url`` is set, else a button whose ephemeral answer is the CLI
    command). ``action_id`` s are :data:`alerts.actions.ACTION_IDS`; ``value`` carries the incident id
    (``"<id>|<duration>"`` for snooze options). Buttons follow the state: no Acknowledge once
    acknowledged, only Not an incident / Investigate once resolved, only Investigate once marked.

    The status says who acknowledged (and when), until when it is snoozed and by whom, who resolved it,
    and "marked not an incident by ..." for false positives. A catch-up summary carries its timeline.

``render_reply(notification) -> str``
    The short thread reply posted with every later notification ("spread to another region: now EU, US");
    for people's actions, the action's note ("Acknowledged by @ana.").

Every value that comes from data (metric, region, segment, command, actor, annotation) goes through
:func:`escape` (``&``, ``<``, ``>``), so a segment named ``<!channel>`` or ``<http://evil|x>`` is shown as
text and can never ping a channel or inject a link. Slack limits are respected: at most 50 blocks, 3000
characters per section text, 2000 per field, 150 for the header; long lists end with "and N more".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from alerts.actions import ACTION_IDS, SNOOZE_CHOICES, ActionKind
from alerts.incidents import SYSTEM_ACTOR
from alerts.model import (
    AlertSignal,
    Incident,
    IncidentState,
    Notification,
    NotifyReason,
    RootCause,
    Severity,
    bucket_word,
    kind_word,
)

__all__ = [
    "MAX_BLOCKS",
    "MAX_FIELD_TEXT",
    "MAX_HEADER_TEXT",
    "MAX_SECTION_TEXT",
    "RenderOptions",
    "SlackMessage",
    "actions_block",
    "escape",
    "render_message",
    "render_reply",
]

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_FIELD_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_FALLBACK_TEXT = 3000

_SEVERITY_ICON = {
    Severity.CRITICAL: ":red_circle:",
    Severity.WARNING: ":large_orange_circle:",
    Severity.INFO: ":large_blue_circle:",
}


@dataclass(frozen=True)
class RenderOptions:
    """How much to show.

    Attributes:
        max_members: Member lines before "and N more".
        max_root_causes: Root-cause lines before "and N more".
        max_commands: Investigate commands before "and N more".
        actions: Add the actions block (buttons).
        investigate_url: URL template of the Investigate button (``{incident_id}`` is replaced, URL-quoted);
            None makes it a button answered with the CLI command.
    """

    max_members: int = 15
    max_root_causes: int = 5
    max_commands: int = 3
    actions: bool = True
    investigate_url: str | None = None


@dataclass(frozen=True)
class SlackMessage:
    """What ``chat.postMessage`` / ``chat.update`` receive: fallback ``text`` and ``blocks``."""

    text: str
    blocks: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks}


def escape(value: str) -> str:
    """Escape Slack's control characters (``&`` first) so data is always shown as plain text."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _bullets(lines: Sequence[str], limit: int, max_lines: int, header: str) -> str:
    """``header`` + as many lines as fit within ``limit`` chars and ``max_lines``; then "and N more"."""
    out = header
    for i, line in enumerate(lines):
        rest = len(lines) - i
        more = f"\n…and {rest - 1} more" if rest > 1 else ""
        candidate = f"{out}\n{line}"
        if i >= max_lines or len(candidate) + len(more) > limit:
            return f"{out}\n…and {rest} more"
        out = candidate
    return out


def _num(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.2f}"
    return f"{x:.4g}"


def _pct(x: float) -> str:
    return f"{x:+.1f}%" if math.isfinite(x) else "n/a"


def _share(x: float) -> str:
    return f"{x * 100:.0f}%"


def _date(ts: datetime) -> str:
    fallback = ts.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(ts.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"


def _names(values: Sequence[str], limit: int = 3, width: int = 60) -> str:
    shown = [escape(_clip(v, width)) for v in values[:limit]]
    extra = len(values) - len(shown)
    return ", ".join(shown) + (f" and {extra} more" if extra > 0 else "")


def _kind(incident: Incident) -> str:
    return incident.kind


def _with_unit(x: float, unit: str) -> str:
    return f"{_num(x)} {escape(unit)}" if unit and math.isfinite(x) else _num(x)


def _bucket_note(incident: Incident) -> str:
    sizes = sorted({bucket_word(s.bucket) for s in incident.signals if s.bucket is not None})
    return f" ({', '.join(sizes)} buckets, times are bucket starts)" if sizes else " (bucket start)"


def _title(incident: Incident, resolved: bool) -> str:
    if incident.false_positive:
        lead = ":no_entry_sign: NOT AN INCIDENT"
    elif resolved:
        lead = ":white_check_mark: RESOLVED"
    else:
        lead = f"{_SEVERITY_ICON[incident.severity]} {incident.severity.value.upper()}"
    kind = _kind(incident)
    title = ""
    for limit, width in ((3, 60), (2, 40), (1, 30), (1, 20)):
        metrics, regions = _names(incident.metrics, limit, width), _names(incident.regions, limit, width)
        title = f"{lead} · {metrics} {kind} in {regions}"
        if len(title) <= MAX_HEADER_TEXT:
            return title
    return _clip(title, MAX_HEADER_TEXT)


def _member_line(s: AlertSignal) -> str:
    segment = f" [{escape(s.segment)}]" if s.segment else ""
    rule = f" (fires at ±{s.threshold:g})" if s.threshold is not None and not s.firing else ""
    return (
        f"• `{escape(s.metric)}` in {escape(s.region)}{segment}, {kind_word(s.kind)}: "
        f"{_with_unit(s.observed, s.unit)} vs {_with_unit(s.expected, s.unit)} expected "
        f"({_pct(s.change_pct)}), score {s.score:+.1f}{rule}; {_with_unit(s.volume, s.volume_unit)} at stake"
    )


def _cause_line(rc: RootCause) -> str:
    line = f"• {escape(rc.segment)}: {_share(rc.share)}"
    parts = [f"{name} {_share(v)}" for name, v in (("mix", rc.mix), ("rate", rc.rate)) if v is not None]
    return line + (f" ({', '.join(parts)})" if parts else "")


def _status(incident: Incident) -> str:
    if incident.false_positive:
        when = f" {_date(incident.false_positive_at)}" if incident.false_positive_at else ""
        return f"marked not an incident by {escape(incident.false_positive_by or '?')}{when}"
    if incident.state is IncidentState.RESOLVED and incident.resolved_at is not None:
        by = (
            ""
            if incident.resolved_by in (None, SYSTEM_ACTOR)
            else f" by {escape(incident.resolved_by or '?')}"
        )
        return f"resolved{by} {_date(incident.resolved_at)}"
    if incident.state is IncidentState.ACKNOWLEDGED:
        when = f" {_date(incident.acknowledged_at)}" if incident.acknowledged_at else ""
        return f"acknowledged by {escape(incident.acknowledged_by or '?')}{when}"
    if incident.state is IncidentState.SNOOZED and incident.snoozed_until is not None:
        return f"snoozed by {escape(incident.snoozed_by or '?')} until {_date(incident.snoozed_until)}"
    return incident.state.word


def _resolution(incident: Incident) -> str:
    if incident.resolved_by in (None, SYSTEM_ACTOR):
        if any(s.kind == "level_shift" for s in incident.signals):
            if incident.acknowledged_by:
                return f"new level accepted by {escape(incident.acknowledged_by)}"
            return f"back to the previous level after {incident.clean_buckets} clean bucket(s)"
        return f"back to normal after {incident.clean_buckets} clean bucket(s)"
    return f"closed by {escape(incident.resolved_by or '?')}"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, MAX_SECTION_TEXT)}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(text, MAX_SECTION_TEXT)}]}


def _button(text: str, kind: ActionKind, value: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": ACTION_IDS[kind],
        "text": {"type": "plain_text", "text": text, "emoji": True},
        "value": value,
        **extra,
    }


def _confirm(title: str, text: str, yes: str) -> dict[str, Any]:
    return {
        "title": {"type": "plain_text", "text": title},
        "text": {"type": "mrkdwn", "text": text},
        "confirm": {"type": "plain_text", "text": yes},
        "deny": {"type": "plain_text", "text": "Cancel"},
    }


#: Slack's limit on a select option's ``value``.
MAX_OPTION_VALUE = 150


def actions_block(incident: Incident, options: RenderOptions = RenderOptions()) -> dict[str, Any] | None:
    """The buttons of the incident's message for its current state (None when nothing is left to do)."""
    value = incident.id
    elements: list[dict[str, Any]] = []
    if incident.active:
        if incident.state is not IncidentState.ACKNOWLEDGED:
            elements.append(_button("Acknowledge", ActionKind.ACKNOWLEDGE, value, style="primary"))
        if len(value) + 5 <= MAX_OPTION_VALUE:
            elements.append(
                {
                    "type": "static_select",
                    "action_id": ACTION_IDS[ActionKind.SNOOZE],
                    "placeholder": {"type": "plain_text", "text": "Snooze…"},
                    "options": [
                        {"text": {"type": "plain_text", "text": f"Snooze {key}"}, "value": f"{value}|{key}"}
                        for key in SNOOZE_CHOICES
                    ],
                }
            )
        elements.append(
            _button(
                "Resolve",
                ActionKind.RESOLVE,
                value,
                confirm=_confirm(
                    "Resolve incident?", "Close it now; a new anomaly opens a new one.", "Resolve"
                ),
            )
        )
    if not incident.false_positive:
        elements.append(
            _button(
                "Not an incident",
                ActionKind.FALSE_POSITIVE,
                value,
                style="danger",
                confirm=_confirm(
                    "Not an incident?",
                    "Marks it a false positive and leaves its buckets out of the next refit.",
                    "Mark",
                ),
            )
        )
    if options.investigate_url:
        url = options.investigate_url.replace("{incident_id}", quote(incident.id, safe=""))
        elements.append(_button("Investigate", ActionKind.INVESTIGATE, value, url=url))
    else:
        elements.append(_button("Investigate", ActionKind.INVESTIGATE, value))
    return {"type": "actions", "block_id": "livewatch_actions", "elements": elements}


def render_message(notification: Notification, options: RenderOptions = RenderOptions()) -> SlackMessage:
    """Block Kit payload of the incident's living message; see the module docstring."""
    incident = notification.incident
    resolved = notification.reason is NotifyReason.RESOLVED or incident.state is IncidentState.RESOLVED
    head = incident.headline
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _title(incident, resolved), "emoji": True}},
        _section(f"*Why this message:* {notification.reason.describe} · incident `{escape(incident.id)}`"),
    ]
    several = len(incident.signals) > 1
    where = f" ({escape(head.metric)} in {escape(head.region)})" if several else ""
    big = incident.largest
    big_where = f" ({escape(big.metric)} in {escape(big.region)})" if several else ""
    fields = [
        f"*Severity*\n{incident.severity.value}",
        f"*Status*\n{_status(incident)}",
        f"*Metric{'s' if len(incident.metrics) > 1 else ''}*\n{_names(incident.metrics, 10)}",
        f"*Region{'s' if len(incident.regions) > 1 else ''}*\n{_names(incident.regions, 10)}",
        f"*Observed vs expected*{where}\n{_with_unit(head.observed, head.unit)} vs "
        f"{_with_unit(head.expected, head.unit)}",
        f"*Change*{where}\n{_pct(head.change_pct)} (score {head.score:+.1f})",
        f"*{'Largest volume' if several else 'Volume'} at stake*{big_where}\n"
        f"{_with_unit(big.volume, big.volume_unit)}",
        f"*Started*{_bucket_note(incident)}\n{_date(incident.started_at)}",
    ]
    blocks.append(
        {"type": "section", "fields": [{"type": "mrkdwn", "text": _clip(f, MAX_FIELD_TEXT)} for f in fields]}
    )

    ordered = sorted(incident.signals, key=lambda s: (-abs(s.score), s.fingerprint))
    firing = [s for s in ordered if s.firing]
    context = [s for s in ordered if not s.firing]
    if several or context:
        header = f"*Firing* ({len(firing)})"
        blocks.append(
            _section(
                _bullets([_member_line(s) for s in firing], MAX_SECTION_TEXT, options.max_members, header)
            )
        )
    if context:
        header = f"*Context* ({len(context)}, below their rule now)"
        blocks.append(
            _section(
                _bullets([_member_line(s) for s in context], MAX_SECTION_TEXT, options.max_members, header)
            )
        )

    causes = incident.root_causes
    if causes:
        title = (
            "*Top root causes* (share of the deviation each segment explains; shares can pass 100% when "
            + ("other segments moved the other way")
            + (
                "; mix = traffic share moved, rate = the segment's own rate moved)"
                if any(rc.mix is not None or rc.rate is not None for rc in causes)
                else ")"
            )
        )
        blocks.append(
            _section(
                _bullets([_cause_line(rc) for rc in causes], MAX_SECTION_TEXT, options.max_root_causes, title)
            )
        )

    commands = list(dict.fromkeys(s.investigate for s in [head, *incident.signals] if s.investigate))
    if commands:
        shown = commands[: options.max_commands]
        extra = len(commands) - len(shown)
        text = "*Investigate*\n" + "\n".join(f"`{escape(c)}`" for c in shown)
        blocks.append(_section(text + (f"\n…and {extra} more" if extra > 0 else "")))

    if notification.reason is NotifyReason.CATCH_UP_SUMMARY and notification.note:
        blocks.append(_section(f"*Timeline* (while livewatch was catching up)\n{escape(notification.note)}"))

    notes: list[str] = []
    if notification.annotation:
        notes.append(f":calendar: {escape(notification.annotation)}")
    if incident.absorbed:
        notes.append(f"{incident.absorbed} per-segment signal(s) folded into this incident")
    if resolved and not incident.false_positive:
        notes.append(f"Resolved: {_resolution(incident)}")
    if notes:
        blocks.append(_context(" · ".join(notes)))
    buttons = actions_block(incident, options) if options.actions else None
    blocks = [*blocks[: MAX_BLOCKS - 1], buttons] if buttons else blocks[:MAX_BLOCKS]

    lead = (
        "NOT AN INCIDENT"
        if incident.false_positive
        else "RESOLVED"
        if resolved
        else incident.severity.value.upper()
    )
    why = "" if resolved else f" — {notification.reason.describe}"
    text = (
        f"[{lead}] {_names(incident.metrics)} {_kind(incident)} in {_names(incident.regions)}: "
        f"{_with_unit(head.observed, head.unit)} vs {_with_unit(head.expected, head.unit)} expected "
        f"({_pct(head.change_pct)}){why}"
    )
    return SlackMessage(text=_clip(text, MAX_FALLBACK_TEXT), blocks=blocks)


def render_reply(notification: Notification) -> str:
    """Short thread reply for a later notification of the same incident (escaped mrkdwn)."""
    incident = notification.incident
    head = incident.headline
    reason = notification.reason
    if reason is NotifyReason.ACTION and notification.note:
        return _clip(escape(notification.note), MAX_SECTION_TEXT)
    if incident.false_positive:
        body = f"marked not an incident by {escape(incident.false_positive_by or '?')}"
    elif reason is NotifyReason.RESOLVED:
        body = _resolution(incident)
    elif reason is NotifyReason.NEW_METRIC_JOINED:
        body = f"metrics now {_names(incident.metrics, 10)}"
    elif reason is NotifyReason.SPREAD:
        body = f"regions now {_names(incident.regions, 10)}"
    elif reason is NotifyReason.NEW_ROOT_CAUSE:
        body = "top causes now " + "; ".join(escape(rc.segment) for rc in incident.root_causes[:3])
    else:
        body = (
            f"{escape(head.metric)} in {escape(head.region)} {_with_unit(head.observed, head.unit)} vs "
            f"{_with_unit(head.expected, head.unit)} ({_pct(head.change_pct)}), "
            f"severity {incident.severity.value}"
        )
    extra = f" · {escape(notification.annotation)}" if notification.annotation else ""
    return _clip(f"*{reason.describe.capitalize()}*: {body}{extra}", MAX_SECTION_TEXT)
