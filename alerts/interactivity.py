"""How clicks on the incident message reach livewatch: Socket Mode (default) or a signed HTTP endpoint.

Both transports parse Slack's ``block_actions`` payload (:func:`alerts.actions.parse_block_actions`) and
hand the :class:`~alerts.actions.IncidentAction` to ONE callback, ``handle(action) -> ActionResult``, that
the composition root wires to the store (typically :func:`alerts.engine.handle_action` in a transaction,
then :func:`alerts.outbox.deliver_pending`). The result's text goes back to the person as an *ephemeral*
message through the payload's ``response_url`` (``slack_sdk.webhook.WebhookClient``), e.g. a refusal.
Payloads that are not livewatch actions are acknowledged and ignored; a callback that raises is logged and
answered "livewatch could not apply that".

``SocketModeInteractivity(app_token, handle, *, api_url="https://slack.com/api/", web_client=None)``
    slack_sdk's builtin Socket Mode client (app-level ``xapp-`` token with ``connections:write``); every
    envelope is acknowledged at once with a ``SocketModeResponse`` (Slack redelivers unacknowledged ones),
    then handled. ``start()`` / ``close()``.

``HttpInteractivity(signing_secret, handle, *, clock, host="127.0.0.1", port=0, path="/slack/actions")``
    A stdlib ``ThreadingHTTPServer`` in a thread for Slack's Interactivity Request URL. Every request is
    checked with :func:`check_signature` (``slack_sdk.signature.SignatureVerifier``: HMAC-SHA256 of
    ``v0:<timestamp>:<body>`` with the signing secret, constant-time compare, 5-minute timestamp window
    against the injected ``clock``) and a replay cache (a signature seen within the window is refused).
    Unsigned, wrong, stale, malformed or replayed requests get HTTP 401 and are never handled; valid ones
    get 200 at once (Slack wants an answer within 3 s) and are handled after the answer is sent.
    ``start()`` / ``close()``; ``url`` is where it listens.

``check_signature(verifier, body, headers, now, seen) -> SignatureCheck`` is the decision, with its reason.

Slack app settings: *Interactivity & Shortcuts* on. For Socket Mode (the default) enable Socket Mode and
create an app-level token (``xapp-...``) with ``connections:write``; no public URL is needed. For HTTP set the
Request URL to where :class:`HttpInteractivity` is reachable (behind TLS) and give livewatch the app's
*Signing Secret*. The bot token needs ``usergroups:read`` when the policy names user groups (see
:data:`alerts.sinks.slack.SCOPES`).

Socket Mode acknowledges an envelope before handling it (Slack wants the ack within 3 s and redelivers
otherwise); a click whose handling then fails is logged and answered ephemerally, and the person can click
again (actions are idempotent).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections import deque
from collections.abc import Callable, Mapping, MutableMapping
from datetime import datetime
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import structlog
from slack_sdk import WebClient
from slack_sdk.signature import Clock, SignatureVerifier
from slack_sdk.socket_mode.builtin import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.webhook import WebhookClient

from alerts.actions import ActionPayloadError, ActionResult, IncidentAction, parse_block_actions
from alerts.model import ensure_utc

__all__ = [
    "SIGNATURE_WINDOW_SECONDS",
    "ActionHandler",
    "HttpInteractivity",
    "SignatureCheck",
    "SocketModeInteractivity",
    "check_signature",
    "dispatch_payload",
]

log = structlog.get_logger(__name__)

ActionHandler = Callable[[IncidentAction], ActionResult]

#: Slack's replay window for signed requests.
SIGNATURE_WINDOW_SECONDS = 300


class SignatureCheck(StrEnum):
    """Outcome of :func:`check_signature`; only ``valid`` is handled."""

    VALID = "valid"
    MISSING = "missing"
    MALFORMED = "malformed"
    STALE = "stale"
    WRONG = "wrong"
    REPLAYED = "replayed"


class _InjectedClock(Clock):
    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock

    def now(self) -> float:
        return self._clock().timestamp()


def check_signature(
    verifier: SignatureVerifier,
    body: bytes,
    headers: Mapping[str, str],
    now: datetime,
    seen: MutableMapping[str, float],
) -> SignatureCheck:
    """Is this a genuine, fresh, first-seen Slack request? Records valid signatures in ``seen``.

    Args:
        verifier: slack_sdk's verifier (its clock must agree with ``now``).
        body: The raw request body.
        headers: Request headers (any case).
        now: Current time (UTC-aware).
        seen: Signature -> request timestamp of requests already accepted (pruned here).
    """
    ensure_utc(now, what="check_signature(now)")
    lower = {k.lower(): v for k, v in headers.items()}
    timestamp, signature = lower.get("x-slack-request-timestamp"), lower.get("x-slack-signature")
    if not timestamp or not signature:
        return SignatureCheck.MISSING
    try:
        ts = int(timestamp)
    except ValueError:
        return SignatureCheck.MALFORMED
    if abs(now.timestamp() - ts) > SIGNATURE_WINDOW_SECONDS:
        return SignatureCheck.STALE
    if not verifier.is_valid(body=body, timestamp=timestamp, signature=signature):
        return SignatureCheck.WRONG
    for old in [s for s, at in seen.items() if now.timestamp() - at > SIGNATURE_WINDOW_SECONDS]:
        del seen[old]
    if signature in seen:
        return SignatureCheck.REPLAYED
    seen[signature] = float(ts)
    return SignatureCheck.VALID


def _reply(response_url: str, text: str) -> None:
    if not response_url or not text:
        return
    try:
        WebhookClient(response_url, timeout=5).send(
            text=text, response_type="ephemeral", replace_original=False
        )
    except Exception as exc:  # the action is applied; only the courtesy reply failed
        log.warning("slack_ephemeral_reply_failed", error=str(exc))


def dispatch_payload(payload: Mapping[str, Any], handle: ActionHandler) -> ActionResult | None:
    """Parse and handle one interaction payload, then reply ephemerally; None when it is not ours."""
    try:
        action = parse_block_actions(payload)
    except ActionPayloadError as exc:
        log.info("slack_interaction_ignored", reason=str(exc))
        return None
    try:
        result = handle(action)
    except Exception:  # one bad click must not stop the listener
        log.exception("slack_action_failed", incident_id=action.incident_id, action=action.kind.value)
        result = ActionResult(False, "error", "livewatch could not apply that; it was logged.")
    _reply(action.response_url, result.text)
    return result


class SocketModeInteractivity:
    """Receives interactions over Socket Mode (see the module docstring)."""

    def __init__(
        self,
        app_token: str,
        handle: ActionHandler,
        *,
        api_url: str = "https://slack.com/api/",
        web_client: WebClient | None = None,
    ) -> None:
        self.handle = handle
        self.client = SocketModeClient(
            app_token=app_token,
            web_client=web_client or WebClient(base_url=api_url),
            auto_reconnect_enabled=True,
        )
        self.client.socket_mode_request_listeners.append(self._on_request)  # type: ignore[arg-type]
        self.results: deque[ActionResult] = deque(maxlen=100)  # the latest results, for status and tests

    def __repr__(self) -> str:  # never show the token
        return f"SocketModeInteractivity(base_url={self.client.web_client.base_url!r})"

    def start(self) -> None:
        self.client.connect()

    def close(self) -> None:
        """Stop listening. The socket is shut down first so the client's blocked read (up to its 3 s
        receive timeout) returns at once."""
        self.client.auto_reconnect_enabled = False
        session = self.client.current_session
        if session is not None and session.sock is not None:
            with contextlib.suppress(OSError):
                session.sock.shutdown(socket.SHUT_RDWR)
        self.client.close()

    def _on_request(self, client: SocketModeClient, request: SocketModeRequest) -> None:
        client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))
        if request.type != "interactive":
            return
        result = dispatch_payload(request.payload, self.handle)
        if result is not None:
            self.results.append(result)


class HttpInteractivity:
    """Receives interactions on a signed HTTP endpoint (see the module docstring)."""

    def __init__(
        self,
        signing_secret: str,
        handle: ActionHandler,
        *,
        clock: Callable[[], datetime],
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/slack/actions",
    ) -> None:
        self.handle = handle
        self.path = path
        self._clock = clock
        self._verifier = SignatureVerifier(signing_secret, clock=_InjectedClock(clock))
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self.checks: list[SignatureCheck] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer._serve(self)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="lw-actions"
        )

    def __repr__(self) -> str:  # never show the secret
        return f"HttpInteractivity(url={self.url!r})"

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{self.path}"

    def start(self) -> HttpInteractivity:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _serve(self, request: BaseHTTPRequestHandler) -> None:
        if request.path.split("?")[0] != self.path:
            self._answer(request, 404, "not found")
            return
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        with self._lock:
            check = check_signature(
                self._verifier, body, dict(request.headers.items()), self._clock(), self._seen
            )
            self.checks.append(check)
        if check is not SignatureCheck.VALID:
            log.warning("slack_request_rejected", reason=check.value)
            self._answer(request, 401, f"invalid request signature ({check.value})")
            return
        try:
            raw = parse_qs(body.decode("utf-8")).get("payload", [""])[0]
            payload = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            self._answer(request, 400, "expected a form field 'payload' with JSON")
            return
        self._answer(request, 200, "")
        dispatch_payload(payload, self.handle)

    @staticmethod
    def _answer(request: BaseHTTPRequestHandler, status: int, text: str) -> None:
        data = text.encode("utf-8")
        request.send_response(status)
        request.send_header("Content-Type", "text/plain; charset=utf-8")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)
        request.wfile.flush()
