"""A loopback fake of the Slack Web API, for tests that drive the real ``slack_sdk`` clients over HTTP.

``FakeSlack`` runs a ``ThreadingHTTPServer`` on 127.0.0.1 (port 0) and implements, with Slack's response
shapes: ``auth.test``, ``chat.postMessage`` (top level and thread replies, with message metadata),
``chat.update``, ``conversations.history`` (``include_all_metadata``), ``conversations.join``,
``files.getUploadURLExternal``, the upload URL it hands out (``POST /upload/<file id>``),
``files.completeUploadExternal``, and an incoming webhook at ``POST /webhook`` (any other
``/webhook/...`` path answers 404 ``no_service`` like a revoked webhook).

Every request is recorded (:class:`RecordedRequest`: API method, HTTP verb, headers, parsed JSON / form
body or raw bytes). Faults can be queued for the next N API calls: HTTP 429 with ``Retry-After``, 5xx,
a hang (for client timeouts), or a Slack error code; and channels can be made unknown
(``channel_not_found``) or bot-less (``not_in_channel``).

**Strict mode** (``reset(strict=True)``, fixture ``strict_slack``) behaves like Slack where the lenient
default is forgiving: channels must exist (:meth:`FakeSlack.add_channel`; the fixture creates
``#tns-alerts``, ``#tns-oncall`` and ``#livewatch-alerts``); ``chat.postMessage`` accepts names or ids but
``conversations.history`` / ``conversations.replies`` need the id (a name answers ``channel_not_found``);
``conversations.list`` is paginated (``limit`` / ``cursor``); the token's scopes are honoured (a call
without its scope answers ``missing_scope`` with ``needed`` / ``provided``) and every API response carries
``x-oauth-scopes``. In both modes: ``conversations.replies``, ``files.info``, ``usergroups.users.list``,
file uploads appear as a file message in the thread (like Slack's file shares), ``apps.connections.open``
(app token ``fake.app_token``) hands out the ``ws://`` URL of :class:`FakeSocketMode`, and ``response_url``
posts (``fake.response_url(...)``) are recorded in ``fake.responses``.

**Crash after accept**: :meth:`FakeSlack.drop_after_next` makes the next N calls of a method take full
effect and then close the connection without answering, as if the caller died (or the network broke)
between Slack accepting the request and the caller recording it.

Use it through the pytest fixtures at the bottom: ``fake_slack_server`` (one server per test session) and
``fake_slack`` (the same server, reset for each test). Point clients at ``fake.api_url`` (``base_url`` of
``slack_sdk.WebClient``) with token ``fake.token``; webhooks at ``fake.webhook_url``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import socket
import struct
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

__all__ = [
    "ALL_SCOPES",
    "FakeSlack",
    "FakeSocketMode",
    "Fault",
    "RecordedRequest",
    "fake_slack",
    "fake_slack_server",
    "strict_slack",
]

#: Scopes a fully granted bot token has in the fake.
ALL_SCOPES = frozenset(
    {
        "chat:write",
        "channels:read",
        "groups:read",
        "channels:history",
        "groups:history",
        "files:write",
        "files:read",
        "usergroups:read",
    }
)

#: Scopes each method needs (any one of them; ``{kind}`` is ``channels`` or ``groups`` by channel).
_METHOD_SCOPES: dict[str, tuple[str, ...]] = {
    "chat.postMessage": ("chat:write",),
    "chat.update": ("chat:write",),
    "conversations.list": ("channels:read", "groups:read"),
    "conversations.history": ("{kind}:history",),
    "conversations.replies": ("{kind}:history",),
    "files.getUploadURLExternal": ("files:write",),
    "files.completeUploadExternal": ("files:write",),
    "files.info": ("files:read",),
    "usergroups.users.list": ("usergroups:read",),
}


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake saw it.

    Attributes:
        method: Slack API method (``"chat.postMessage"``), or ``"upload"`` / ``"webhook"``.
        verb: HTTP verb.
        headers: Lower-cased header names.
        body: Parsed JSON or form (query string for GET) as a dict; raw bytes for uploads.
        fault: The fault answered instead of the real behaviour, if any.
    """

    method: str
    verb: str
    headers: dict[str, str]
    body: Any
    fault: str | None = None


@dataclass
class Fault:
    """Answer the next ``remaining`` API calls (optionally only of ``methods``) with this fault."""

    remaining: int
    status: int = 500
    error: str = "internal_error"
    retry_after: int | None = None
    hang_seconds: float = 0.0
    methods: frozenset[str] | None = None
    drop_after_accept: bool = False


@dataclass
class _State:
    requests: list[RecordedRequest] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    channel_ids: dict[str, str] = field(default_factory=dict)
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    uploads: dict[str, dict[str, Any]] = field(default_factory=dict)
    missing_channels: set[str] = field(default_factory=set)
    not_member_channels: set[str] = field(default_factory=set)
    webhook_messages: list[dict[str, Any]] = field(default_factory=list)
    counter: int = 0
    strict: bool = False
    scopes: frozenset[str] = ALL_SCOPES
    private_channels: set[str] = field(default_factory=set)
    usergroups: dict[str, list[str]] = field(default_factory=dict)
    responses: list[dict[str, Any]] = field(default_factory=list)


class FakeSlack:
    """The fake server; see the module docstring."""

    token = "xoxb-fake-token"
    app_token = "xapp-fake-token"

    def __init__(self) -> None:
        self.socket_mode = FakeSocketMode()
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._state = _State()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-slack", daemon=True
        )

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> FakeSlack:
        self._thread.start()
        self.socket_mode.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self.socket_mode.stop()
        self._server.shutdown()
        self._server.server_close()

    def reset(self, *, strict: bool = False, scopes: frozenset[str] | set[str] | None = None) -> None:
        """Forget requests, messages, faults and channel settings (wakes any hanging request).

        Args:
            strict: Behave like Slack (see the module docstring).
            scopes: The bot token's scopes (default: :data:`ALL_SCOPES`).
        """
        self._release.set()
        with self._lock:
            self._state = _State(strict=strict, scopes=frozenset(ALL_SCOPES if scopes is None else scopes))
        self._release = threading.Event()
        self.socket_mode.reset()

    def add_channel(self, name: str, *, private: bool = False) -> str:
        """Create a channel (strict mode needs it before posting); returns its id."""
        with self._lock:
            cid = self._channel_id(name)
            if private:
                self._state.private_channels.add(cid)
            return cid

    def set_scopes(self, scopes: set[str] | frozenset[str]) -> None:
        """The bot token now has exactly these scopes."""
        with self._lock:
            self._state.scopes = frozenset(scopes)

    def add_usergroup(self, group_id: str, users: list[str]) -> None:
        with self._lock:
            self._state.usergroups[group_id] = list(users)

    def response_url(self, key: str = "r1") -> str:
        """A ``response_url`` to put in interaction payloads; posts to it land in :attr:`responses`."""
        return f"http://127.0.0.1:{self.port}/response/{key}"

    @property
    def responses(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._state.responses)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhook"

    # -- fault injection -------------------------------------------------------------------------
    def fail_next(
        self, count: int, *, status: int = 500, error: str = "internal_error", methods: set[str] | None = None
    ) -> None:
        """The next ``count`` API calls answer HTTP ``status`` with ``error``."""
        self._add(Fault(count, status=status, error=error, methods=frozenset(methods) if methods else None))

    def rate_limit_next(self, count: int, *, retry_after: int = 0, methods: set[str] | None = None) -> None:
        """The next ``count`` API calls answer 429 with ``Retry-After: retry_after``."""
        self._add(
            Fault(
                count,
                status=429,
                error="ratelimited",
                retry_after=retry_after,
                methods=frozenset(methods) if methods else None,
            )
        )

    def hang_next(self, count: int, *, seconds: float, methods: set[str] | None = None) -> None:
        """The next ``count`` API calls wait ``seconds`` (or until reset) before answering 500."""
        self._add(Fault(count, hang_seconds=seconds, methods=frozenset(methods) if methods else None))

    def drop_after_next(self, count: int, *, methods: set[str]) -> None:
        """The next ``count`` calls of ``methods`` take effect, then the connection closes unanswered.

        ``"upload"`` names the file upload POST.
        """
        self._add(
            Fault(count, error="dropped_after_accept", methods=frozenset(methods), drop_after_accept=True)
        )

    def error_next(self, count: int, error: str, *, methods: set[str] | None = None) -> None:
        """The next ``count`` API calls answer HTTP 200 ``{"ok": false, "error": error}``."""
        self._add(Fault(count, status=200, error=error, methods=frozenset(methods) if methods else None))

    def reset_faults(self) -> None:
        """Drop queued faults (Slack is back)."""
        with self._lock:
            self._state.faults.clear()

    def remove_channel(self, name: str) -> None:
        """Posting to ``name`` answers ``channel_not_found``."""
        with self._lock:
            self._state.missing_channels.add(name.lstrip("#"))

    def kick_bot(self, name: str) -> None:
        """Posting to ``name`` answers ``not_in_channel``."""
        with self._lock:
            self._state.not_member_channels.add(name.lstrip("#"))

    def _add(self, fault: Fault) -> None:
        with self._lock:
            self._state.faults.append(fault)

    # -- inspection ------------------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._state.requests)

    def calls(self, method: str, *, include_faults: bool = False) -> list[RecordedRequest]:
        """Recorded requests of one API method (by default only those answered normally)."""
        return [r for r in self.requests if r.method == method and (include_faults or r.fault is None)]

    def channel_id(self, name: str) -> str:
        with self._lock:
            return self._channel_id(name)

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """Every message in ``channel`` (name or id), top-level and replies, oldest first (copies)."""
        with self._lock:
            cid = self._channel_id(channel)
            return [dict(m) for m in self._state.messages.get(cid, [])]

    def top_level(self, channel: str) -> list[dict[str, Any]]:
        return [m for m in self.messages(channel) if "thread_ts" not in m]

    def replies(self, channel: str, ts: str) -> list[dict[str, Any]]:
        return [m for m in self.messages(channel) if m.get("thread_ts") == ts]

    def files(self) -> list[dict[str, Any]]:
        """Files whose upload was completed (shared)."""
        with self._lock:
            return [dict(f) for f in self._state.uploads.values() if f.get("completed")]

    def text_replies(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """Thread replies that are messages (not file shares)."""
        return [m for m in self.replies(channel, ts) if "files" not in m]

    @property
    def webhook_messages(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._state.webhook_messages)

    # -- request handling ------------------------------------------------------------------------
    def _channel_id(self, name: str) -> str:
        """Id for a channel name or id (lock held)."""
        key = name.lstrip("#")
        if key in self._state.channel_ids.values():
            return key
        if key not in self._state.channel_ids:
            self._state.channel_ids[key] = f"C{len(self._state.channel_ids) + 1:08d}"
        return self._state.channel_ids[key]

    def _channel_name(self, cid: str) -> str:
        for name, known in self._state.channel_ids.items():
            if known == cid:
                return name
        return cid

    def _next_ts(self) -> str:
        self._state.counter += 1
        return f"{1_700_000_000 + self._state.counter}.{self._state.counter:06d}"

    def _handle(self, handler: BaseHTTPRequestHandler, verb: str) -> None:
        split = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in handler.headers.items()}
        body: Any
        if split.path.startswith("/upload/"):
            method, body = "upload", raw
        elif split.path.startswith("/response/"):
            method, body = "response", json.loads(raw or b"{}")
        elif split.path.startswith("/webhook"):
            method, body = "webhook", json.loads(raw or b"{}")
        else:
            method = split.path.removeprefix("/api/")
            if verb == "GET":
                body = dict(parse_qsl(split.query))
            elif headers.get("content-type", "").startswith("application/json"):
                body = json.loads(raw or b"{}")
            else:
                body = dict(parse_qsl(raw.decode("utf-8")))

        fault = self._take_fault(method)
        with self._lock:
            self._state.requests.append(
                RecordedRequest(method, verb, headers, body, None if fault is None else fault.error)
            )
        if fault is not None and fault.drop_after_accept:
            self._drop_after(handler, method, split.path, raw, body, headers)
            return
        if fault is not None:
            if fault.hang_seconds:
                self._release.wait(fault.hang_seconds)
            extra = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
            self._reply(handler, fault.status, {"ok": False, "error": fault.error}, extra)
            return
        if method == "upload":
            self._store_upload(split.path, raw)
            self._reply_text(handler, 200, f"OK - {len(raw)}")
            return
        if method == "response":
            with self._lock:
                self._state.responses.append(body)
            self._reply_text(handler, 200, "ok")
            return
        if method == "webhook":
            if split.path != "/webhook":  # like a deleted or mistyped webhook URL
                self._reply_text(handler, 404, "no_service")
                return
            with self._lock:
                self._state.webhook_messages.append(body)
            self._reply_text(handler, 200, "ok")
            return
        status, answer, extra = self._answer(method, headers, body)
        self._reply(handler, status, answer, extra)

    def _store_upload(self, path: str, raw: bytes) -> None:
        file_id = path.removeprefix("/upload/")
        with self._lock:
            if file_id in self._state.uploads:
                self._state.uploads[file_id]["data"] = raw

    def _answer(
        self, method: str, headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Status, JSON answer and extra headers of one API call (applies its effects)."""
        app_call = method == "apps.connections.open"
        expected = self.app_token if app_call else self.token
        token = headers.get("authorization", "").removeprefix("Bearer ")
        if not token and isinstance(body, dict):
            token = str(body.get("token", ""))
        if token != expected:
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        route = getattr(self, "_api_" + method.replace(".", "_"), None)
        if route is None:
            return 404, {"ok": False, "error": "unknown_method"}, {}
        with self._lock:
            extra = {"x-oauth-scopes": ",".join(sorted(self._state.scopes))} if self._state.strict else {}
            missing = None if app_call else self._missing_scope(method, body)
            answer = missing if missing is not None else route(body)
        return 200, answer, extra

    def _missing_scope(self, method: str, body: Any) -> dict[str, Any] | None:
        """``missing_scope`` answer when the token lacks the method's scope (lock held)."""
        needs = _METHOD_SCOPES.get(method)
        if not needs:
            return None
        kind = "channels"
        if isinstance(body, dict) and body.get("channel"):
            key = str(body["channel"]).lstrip("#")
            cid = self._state.channel_ids.get(key, key)
            kind = "groups" if cid in self._state.private_channels else "channels"
        needed = [n.format(kind=kind) for n in needs]
        if any(n in self._state.scopes for n in needed):
            return None
        return {
            "ok": False,
            "error": "missing_scope",
            "needed": ",".join(needed),
            "provided": ",".join(sorted(self._state.scopes)),
        }

    def _drop_after(
        self,
        handler: BaseHTTPRequestHandler,
        method: str,
        path: str,
        raw: bytes,
        body: Any,
        headers: dict[str, str],
    ) -> None:
        """Apply the call's effect, then close the connection without an answer."""
        if method == "upload":
            self._store_upload(path, raw)
        else:
            self._answer(method, headers, body)
        handler.close_connection = True
        with contextlib.suppress(OSError):
            handler.connection.shutdown(socket.SHUT_RDWR)

    def _take_fault(self, method: str) -> Fault | None:
        with self._lock:
            for fault in self._state.faults:
                if fault.remaining > 0 and (fault.methods is None or method in fault.methods):
                    fault.remaining -= 1
                    return fault
        return None

    @staticmethod
    def _reply(
        handler: BaseHTTPRequestHandler,
        status: int,
        payload: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(payload).encode("utf-8")
        try:
            handler.send_response(status)
        except (BrokenPipeError, ConnectionResetError):
            return
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        try:
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
            return

    @staticmethod
    def _reply_text(handler: BaseHTTPRequestHandler, status: int, text: str) -> None:
        data = text.encode("utf-8")
        handler.send_response(status)
        handler.send_header("Content-Type", "text/plain; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        try:
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
            return

    # -- API methods (called with the lock held) -------------------------------------------------
    def _known(self, channel: str) -> str | None:
        """The id of an existing channel given by name or id, else None (strict lookups)."""
        key = channel.lstrip("#")
        if key in self._state.channel_ids.values():
            return key
        return self._state.channel_ids.get(key)

    def _check_channel(self, channel: str, *, id_only: bool = False) -> str | None:
        if self._state.strict:
            if id_only and channel.lstrip("#") not in self._state.channel_ids.values():
                return "channel_not_found"
            if self._known(channel) is None:
                return "channel_not_found"
        name = self._channel_name(self._channel_id(channel))
        if name in self._state.missing_channels:
            return "channel_not_found"
        if name in self._state.not_member_channels:
            return "not_in_channel"
        return None

    def _api_apps_connections_open(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": self.socket_mode.url}

    def _api_conversations_list(self, body: dict[str, Any]) -> dict[str, Any]:
        limit = int(body.get("limit") or 100)
        offset = int(body.get("cursor") or 0)
        types = set(str(body.get("types") or "public_channel").split(","))
        channels = []
        for name, cid in self._state.channel_ids.items():
            private = cid in self._state.private_channels
            if ("private_channel" if private else "public_channel") not in types:
                continue
            if private and "groups:read" not in self._state.scopes:
                continue
            if not private and "channels:read" not in self._state.scopes:
                continue
            channels.append(
                {
                    "id": cid,
                    "name": name,
                    "is_channel": True,
                    "is_private": private,
                    "is_archived": False,
                    "is_member": name not in self._state.not_member_channels,
                }
            )
        page = channels[offset : offset + limit]
        more = offset + limit < len(channels)
        return {
            "ok": True,
            "channels": page,
            "response_metadata": {"next_cursor": str(offset + limit) if more else ""},
        }

    def _api_conversations_replies(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = str(body.get("channel", ""))
        error = self._check_channel(channel, id_only=True)
        if error:
            return {"ok": False, "error": error}
        cid = self._channel_id(channel)
        ts = body.get("ts")
        with_meta = str(body.get("include_all_metadata", "")).lower() in ("1", "true")
        thread = [m for m in self._state.messages.get(cid, []) if m["ts"] == ts or m.get("thread_ts") == ts]
        if not thread:
            return {"ok": False, "error": "thread_not_found"}
        out = []
        for message in thread:
            copy = dict(message)
            if not with_meta:
                copy.pop("metadata", None)
            out.append(copy)
        return {"ok": True, "messages": out, "has_more": False}

    def _api_files_info(self, body: dict[str, Any]) -> dict[str, Any]:
        upload = self._state.uploads.get(str(body.get("file", "")))
        if upload is None or not upload.get("completed"):
            return {"ok": False, "error": "file_not_found"}
        share = {"ts": upload.get("message_ts"), "thread_ts": upload.get("thread_ts")}
        kind = "private" if upload.get("channel") in self._state.private_channels else "public"
        file = {
            "id": upload["id"],
            "name": upload["filename"],
            "title": upload.get("title"),
            "shares": {kind: {upload.get("channel"): [share]}},
        }
        return {"ok": True, "file": file}

    def _api_usergroups_users_list(self, body: dict[str, Any]) -> dict[str, Any]:
        users = self._state.usergroups.get(str(body.get("usergroup", "")))
        if users is None:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": list(users)}

    def _api_auth_test(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": "https://fake.slack.test/", "team": "Livewatch Test", "user": "livewatch",
                "team_id": "T00000001", "user_id": "U00000001", "bot_id": "B00000001"}  # fmt: skip

    def _api_chat_postMessage(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = str(body.get("channel", ""))
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        error = self._check_channel(channel)
        if error:
            return {"ok": False, "error": error}
        if not body.get("text") and not body.get("blocks"):
            return {"ok": False, "error": "no_text"}
        cid = self._channel_id(channel)
        messages = self._state.messages.setdefault(cid, [])
        thread_ts = body.get("thread_ts")
        if thread_ts is not None and not any(m["ts"] == thread_ts for m in messages):
            return {"ok": False, "error": "thread_not_found"}
        message: dict[str, Any] = {"type": "message", "ts": self._next_ts(), "text": body.get("text", "")}
        blocks = body.get("blocks")
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        if blocks:
            message["blocks"] = blocks
        if thread_ts is not None:
            message["thread_ts"] = thread_ts
        metadata = body.get("metadata")
        if isinstance(metadata, str):
            metadata = json.loads(metadata)
        if metadata:
            message["metadata"] = metadata
        messages.append(message)
        return {"ok": True, "channel": cid, "ts": message["ts"], "message": message}

    def _api_chat_update(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = str(body.get("channel", ""))
        error = self._check_channel(channel)
        if error:
            return {"ok": False, "error": error}
        cid = self._channel_id(channel)
        for message in self._state.messages.get(cid, []):
            if message["ts"] == body.get("ts"):
                message["text"] = body.get("text", message.get("text", ""))
                blocks = body.get("blocks")
                if isinstance(blocks, str):
                    blocks = json.loads(blocks)
                if blocks is not None:
                    message["blocks"] = blocks
                message["edited"] = {
                    "user": "U00000001",
                    "count": message.get("edited", {}).get("count", 0) + 1,
                }
                return {"ok": True, "channel": cid, "ts": message["ts"], "text": message["text"]}
        return {"ok": False, "error": "message_not_found"}

    def _api_conversations_history(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = str(body.get("channel", ""))
        error = self._check_channel(channel, id_only=True)
        if error:
            return {"ok": False, "error": error}
        cid = self._channel_id(channel)
        with_meta = str(body.get("include_all_metadata", "")).lower() in ("1", "true")
        limit = int(body.get("limit") or 100)
        top = [m for m in self._state.messages.get(cid, []) if "thread_ts" not in m]
        out = []
        for message in reversed(top[-limit:]):
            copy = dict(message)
            if not with_meta:
                copy.pop("metadata", None)
            out.append(copy)
        return {"ok": True, "messages": out, "has_more": len(top) > limit}

    def _api_conversations_join(self, body: dict[str, Any]) -> dict[str, Any]:
        cid = self._channel_id(str(body.get("channel", "")))
        self._state.not_member_channels.discard(self._channel_name(cid))
        return {"ok": True, "channel": {"id": cid}}

    def _api_files_getUploadURLExternal(self, body: dict[str, Any]) -> dict[str, Any]:
        if not body.get("filename") or not body.get("length"):
            return {"ok": False, "error": "invalid_arguments"}
        file_id = f"F{len(self._state.uploads) + 1:08d}"
        self._state.uploads[file_id] = {
            "id": file_id,
            "filename": body["filename"],
            "length": int(body["length"]),
        }
        return {
            "ok": True,
            "upload_url": f"http://127.0.0.1:{self.port}/upload/{file_id}",
            "file_id": file_id,
        }

    def _api_files_completeUploadExternal(self, body: dict[str, Any]) -> dict[str, Any]:
        files = json.loads(body.get("files", "[]"))
        done = []
        for item in files:
            upload = self._state.uploads.get(item.get("id"))
            if upload is None or "data" not in upload:
                return {"ok": False, "error": "file_not_found"}
            if len(upload["data"]) != upload["length"]:
                return {"ok": False, "error": "file_upload_size_mismatch"}
            channel = body.get("channel_id")
            if channel:
                error = self._check_channel(str(channel))
                if error:
                    return {"ok": False, "error": error}
            upload.update(
                title=item.get("title"), channel=channel, thread_ts=body.get("thread_ts"), completed=True
            )
            if channel:
                message = {
                    "type": "message",
                    "ts": self._next_ts(),
                    "text": "",
                    "user": "U00000001",
                    "files": [{"id": upload["id"], "name": upload["filename"], "title": item.get("title")}],
                }
                if body.get("thread_ts"):
                    message["thread_ts"] = body["thread_ts"]
                upload["message_ts"] = message["ts"]
                self._state.messages.setdefault(self._channel_id(str(channel)), []).append(message)
            done.append({"id": upload["id"], "title": item.get("title"), "name": upload["filename"]})
        return {"ok": True, "files": done}


class FakeSocketMode:
    """A minimal loopback Socket Mode server (RFC 6455 text frames, ping/pong, close) for the builtin
    ``slack_sdk.socket_mode`` client.

    Clients get its URL from ``apps.connections.open``; on connect it sends ``hello``. Tests push envelopes
    with :meth:`send_envelope` and wait for the client's ack with :meth:`wait_ack`.
    """

    _GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self._cond = threading.Condition()
        self._clients: list[socket.socket] = []
        self._acks: dict[str, dict[str, Any]] = {}
        self._stopped = False

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self._sock.getsockname()[1]}/link/?ticket=fake"

    def start(self) -> None:
        threading.Thread(target=self._accept, name="fake-socket-mode", daemon=True).start()

    def stop(self) -> None:
        self._stopped = True
        self.reset()
        self._sock.close()

    def reset(self) -> None:
        with self._cond:
            clients, self._clients, self._acks = self._clients, [], {}
        for client in clients:
            with contextlib.suppress(OSError):
                client.close()

    def wait_connected(self, timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: bool(self._clients), timeout)

    def send_envelope(self, payload: dict[str, Any], *, type: str = "interactive") -> str:
        """Send an envelope to the newest client; returns its ``envelope_id``."""
        envelope_id = str(uuid.uuid4())
        message = {
            "envelope_id": envelope_id,
            "type": type,
            "payload": payload,
            "accepts_response_payload": type != "events_api",
        }
        with self._cond:
            client = self._clients[-1]
        client.sendall(self._frame(json.dumps(message).encode("utf-8"), 0x1))
        return envelope_id

    def wait_ack(self, envelope_id: str, timeout: float = 5.0) -> dict[str, Any] | None:
        with self._cond:
            self._cond.wait_for(lambda: envelope_id in self._acks, timeout)
            return self._acks.get(envelope_id)

    # -- protocol ----------------------------------------------------------------------------------
    @staticmethod
    def _frame(data: bytes, opcode: int) -> bytes:
        head = bytes([0x80 | opcode])
        n = len(data)
        if n <= 125:
            head += bytes([n])
        elif n <= 0xFFFF:
            head += bytes([126]) + struct.pack("!H", n)
        else:
            head += bytes([127]) + struct.pack("!Q", n)
        return head + data

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = client.recv(1024)
                if not chunk:
                    return
                request += chunk
            lines = request.decode("latin-1").split("\r\n")
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
            }
            accept = base64.b64encode(
                hashlib.sha1((headers.get("sec-websocket-key", "") + self._GUID).encode()).digest()
            ).decode()
            client.sendall(
                (
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
                ).encode()
            )
            hello = {"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A00000001"}}
            client.sendall(self._frame(json.dumps(hello).encode(), 0x1))
            with self._cond:
                self._clients.append(client)
                self._cond.notify_all()
            self._read_frames(client)
        except OSError:
            return
        finally:
            client.close()

    @staticmethod
    def _read_exact(client: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = client.recv(n - len(data))
            if not chunk:
                raise ConnectionError("client closed")
            data += chunk
        return data

    def _read_frames(self, client: socket.socket) -> None:
        while True:
            b1, b2 = self._read_exact(client, 2)
            opcode, length = b1 & 0x0F, b2 & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", self._read_exact(client, 2))
            elif length == 127:
                (length,) = struct.unpack("!Q", self._read_exact(client, 8))
            mask = self._read_exact(client, 4) if b2 & 0x80 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self._read_exact(client, length)))
            if opcode == 0x9:  # ping
                client.sendall(self._frame(data, 0xA))
            elif opcode == 0x8:  # close
                client.sendall(self._frame(data[:2], 0x8))
                return
            elif opcode == 0x1:
                message = json.loads(data.decode("utf-8"))
                if "envelope_id" in message:
                    with self._cond:
                        self._acks[message["envelope_id"]] = message
                        self._cond.notify_all()


@pytest.fixture(scope="session")
def fake_slack_server() -> Iterator[FakeSlack]:
    """One fake Slack server for the whole test session."""
    server = FakeSlack().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake_slack(fake_slack_server: FakeSlack) -> FakeSlack:
    """The session's fake Slack, reset for this test."""
    fake_slack_server.reset()
    return fake_slack_server


#: Channels the ``strict_slack`` fixture creates.
STRICT_CHANNELS = ("tns-alerts", "tns-oncall", "livewatch-alerts")


@pytest.fixture
def strict_slack(fake_slack_server: FakeSlack) -> FakeSlack:
    """The session's fake Slack in strict mode (behaves like Slack), reset for this test."""
    fake_slack_server.reset(strict=True)
    for name in STRICT_CHANNELS:
        fake_slack_server.add_channel(name)
    return fake_slack_server
