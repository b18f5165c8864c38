"""Interactivity transports: Slack signature checks, block_actions over HTTP end to end (real WebClient
against the fake Slack), and a Socket Mode envelope through the fake's loopback websocket server."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from slack_sdk.signature import SignatureVerifier

from alerts.actions import ACTION_IDS, ActionKind, ActionPolicy, ActionResult, IncidentAction
from alerts.engine import AlertRepos, handle_action, process
from alerts.interactivity import (
    HttpInteractivity,
    SignatureCheck,
    SocketModeInteractivity,
    check_signature,
)
from alerts.outbox import deliver_pending
from alerts.routing import Route
from alerts.sinks.slack import SlackSink
from alerts.testing import InMemoryChannelDirectory, InMemoryStepLog
from tests.alerts.factories import T0, signal
from tests.alerts.test_actions import payload
from tests.fakeslack import FakeSlack

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
NOW = T0 + timedelta(minutes=5)
ROUTE = Route(receiver="slack", channel="#tns-alerts", repeat_interval=timedelta(hours=4))
POLICY = ActionPolicy(user_ids=frozenset({"U1"}))


def sign(body: bytes, at: datetime, secret: str = SECRET) -> dict[str, str]:
    ts = str(int(at.timestamp()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature or ""}


class _Fixed:
    def now(self) -> float:
        return NOW.timestamp()


VERIFIER = SignatureVerifier(SECRET, clock=_Fixed())
BODY = b"payload=%7B%7D"

SIGNATURE_CASES = [
    # (headers) -> check   # what it proves
    (sign(BODY, NOW), SignatureCheck.VALID),  # signed now with the secret
    (sign(BODY, NOW - timedelta(minutes=4)), SignatureCheck.VALID),  # inside the 5-minute window
    (sign(BODY, NOW, secret="another-secret"), SignatureCheck.WRONG),  # wrong secret
    ({**sign(BODY, NOW), "X-Slack-Signature": "v0=" + "0" * 64}, SignatureCheck.WRONG),  # forged
    (sign(BODY, NOW - timedelta(minutes=6)), SignatureCheck.STALE),  # too old (replay window)
    (sign(BODY, NOW + timedelta(minutes=6)), SignatureCheck.STALE),  # from the future
    ({}, SignatureCheck.MISSING),  # unsigned
    ({"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=x"}, SignatureCheck.MALFORMED),
]


@pytest.mark.parametrize(("headers", "expected"), SIGNATURE_CASES)
def test_check_signature(headers: dict[str, str], expected: SignatureCheck) -> None:
    assert check_signature(VERIFIER, BODY, headers, NOW, {}) is expected


def test_a_replayed_request_is_rejected() -> None:
    seen: dict[str, float] = {}
    headers = sign(BODY, NOW)
    assert check_signature(VERIFIER, BODY, headers, NOW, seen) is SignatureCheck.VALID
    assert (
        check_signature(VERIFIER, BODY, headers, NOW + timedelta(seconds=1), seen) is SignatureCheck.REPLAYED
    )


def test_a_tampered_body_is_wrong() -> None:
    assert check_signature(VERIFIER, BODY + b"x", sign(BODY, NOW), NOW, {}) is SignatureCheck.WRONG


# -- end to end --------------------------------------------------------------------------------------------
@dataclass
class App:
    """What the composition root would wire: repos, a Slack sink with durable steps, the action callback."""

    fake: FakeSlack
    repos: AlertRepos
    sink: SlackSink
    results: list[ActionResult] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def handle(self, action: IncidentAction) -> ActionResult:
        result = handle_action(action, NOW, repos=self.repos, routes=ROUTE, policy=POLICY)
        deliver_pending(self.repos.outbox, {"slack": self.sink}, NOW)
        self.results.append(result)
        self.done.set()
        return result

    @property
    def incident_id(self) -> str:
        (inc,) = self.repos.incidents.list_incidents()
        return inc.id

    def responses(self, count: int = 1) -> list[dict[str, Any]]:
        """The ephemeral replies, once ``count`` arrived (they are sent after the callback returns)."""
        deadline = time.monotonic() + 5
        while len(self.fake.responses) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.fake.responses

    def message(self) -> dict[str, Any]:
        (message,) = self.fake.top_level("#tns-alerts")
        return message


@pytest.fixture
def app(strict_slack: FakeSlack, repos: AlertRepos) -> App:
    sink = SlackSink.from_token(
        strict_slack.token,
        api_url=strict_slack.api_url,
        timeout=2,
        max_retries=1,
        backoff_factor=0.001,
        steps=InMemoryStepLog(),
        channels=InMemoryChannelDirectory(),
    )
    process([signal()], T0, repos=repos, routes=ROUTE)
    deliver_pending(repos.outbox, {"slack": sink}, T0)
    return App(strict_slack, repos, sink)


@pytest.fixture
def http(app: App) -> Iterator[HttpInteractivity]:
    server = HttpInteractivity(SECRET, app.handle, clock=lambda: NOW).start()
    try:
        yield server
    finally:
        server.close()


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/x-www-form-urlencoded", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _form(app: App, kind: ActionKind, user: str = "U1") -> bytes:
    data = payload(ACTION_IDS[kind], app.incident_id, user=user)
    data["response_url"] = app.fake.response_url()
    data["channel"]["id"] = app.fake.channel_id("#tns-alerts")
    return urlencode({"payload": json.dumps(data)}).encode()


def test_block_actions_over_http_edits_the_message_and_notes_it_in_the_thread(
    app: App, http: HttpInteractivity
) -> None:
    body = _form(app, ActionKind.ACKNOWLEDGE)
    assert _post(http.url, body, sign(body, NOW)) == 200
    assert app.done.wait(5)
    (result,) = app.results
    assert result.ok and result.reason == "acknowledged"
    message = app.message()
    status = message["blocks"][2]["fields"][1]["text"]
    assert status.startswith("*Status*\nacknowledged by @ana")
    assert [r["text"] for r in app.fake.text_replies("#tns-alerts", message["ts"])] == [
        "Acknowledged by @ana."
    ]
    assert app.responses() == [
        {"text": "Acknowledged by @ana.", "response_type": "ephemeral", "replace_original": False}
    ]
    actions = message["blocks"][-1]["elements"]
    assert ACTION_IDS[ActionKind.ACKNOWLEDGE] not in [e["action_id"] for e in actions]


def test_http_rejects_unsigned_wrong_stale_and_replayed_requests(app: App, http: HttpInteractivity) -> None:
    body = _form(app, ActionKind.RESOLVE)
    assert _post(http.url, body, {}) == 401
    assert _post(http.url, body, sign(body, NOW, secret="nope")) == 401
    assert _post(http.url, body, sign(body, NOW - timedelta(minutes=10))) == 401
    headers = sign(body, NOW)
    assert _post(http.url, body, headers) == 200
    assert app.done.wait(5)
    assert _post(http.url, body, headers) == 401  # the same signed request again
    assert http.checks == [
        SignatureCheck.MISSING,
        SignatureCheck.WRONG,
        SignatureCheck.STALE,
        SignatureCheck.VALID,
        SignatureCheck.REPLAYED,
    ]
    assert len(app.results) == 1


def test_a_person_not_allowed_gets_an_ephemeral_refusal(app: App, http: HttpInteractivity) -> None:
    body = _form(app, ActionKind.RESOLVE, user="U666")
    assert _post(http.url, body, sign(body, NOW)) == 200
    assert app.done.wait(5)
    (response,) = app.responses()
    assert response["response_type"] == "ephemeral" and "not allowed" in response["text"]
    assert app.message()["blocks"][0]["text"]["text"].startswith(":large_orange_circle:")  # unchanged


def test_a_socket_mode_envelope_is_acked_and_handled(app: App) -> None:
    listener = SocketModeInteractivity(app.fake.app_token, app.handle, api_url=app.fake.api_url)
    listener.start()
    try:
        assert app.fake.socket_mode.wait_connected()
        data = payload(ACTION_IDS[ActionKind.SNOOZE], selected=f"{app.incident_id}|4h")
        data["response_url"] = app.fake.response_url()
        envelope_id = app.fake.socket_mode.send_envelope(data)
        assert app.fake.socket_mode.wait_ack(envelope_id) == {"envelope_id": envelope_id}
        assert app.done.wait(5)
    finally:
        listener.close()
    (result,) = app.results
    assert result.ok and result.reason == "snoozed"
    assert "snoozed by @ana until" in app.message()["blocks"][2]["fields"][1]["text"]
    assert list(listener.results) == [result]
