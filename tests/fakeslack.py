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

Use it through the pytest fixtures at the bottom: ``fake_slack_server`` (one server per test session) and
``fake_slack`` (the same server, reset for each test). Point clients at ``fake.api_url`` (``base_url`` of
``slack_sdk.WebClient``) with token ``fake.token``; webhooks at ``fake.webhook_url``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

__all__ = ["FakeSlack", "Fault", "RecordedRequest", "fake_slack", "fake_slack_server"]


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


class FakeSlack:
    """The fake server; see the module docstring."""

    token = "xoxb-fake-token"

    def __init__(self) -> None:
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
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        """Forget requests, messages, faults and channel settings (wakes any hanging request)."""
        self._release.set()
        with self._lock:
            self._state = _State()
        self._release = threading.Event()

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
        with self._lock:
            return [dict(f) for f in self._state.uploads.values()]

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

        fault = self._take_fault(method) if method not in ("upload",) else None
        with self._lock:
            self._state.requests.append(
                RecordedRequest(method, verb, headers, body, None if fault is None else fault.error)
            )
        if fault is not None:
            if fault.hang_seconds:
                self._release.wait(fault.hang_seconds)
            extra = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
            self._reply(handler, fault.status, {"ok": False, "error": fault.error}, extra)
            return
        if method == "upload":
            file_id = split.path.removeprefix("/upload/")
            with self._lock:
                if file_id in self._state.uploads:
                    self._state.uploads[file_id]["data"] = raw
            self._reply_text(handler, 200, f"OK - {len(raw)}")
            return
        if method == "webhook":
            if split.path != "/webhook":  # like a deleted or mistyped webhook URL
                self._reply_text(handler, 404, "no_service")
                return
            with self._lock:
                self._state.webhook_messages.append(body)
            self._reply_text(handler, 200, "ok")
            return
        if headers.get("authorization") != f"Bearer {self.token}":
            self._reply(handler, 200, {"ok": False, "error": "invalid_auth"})
            return
        route = getattr(self, "_api_" + method.replace(".", "_"), None)
        if route is None:
            self._reply(handler, 404, {"ok": False, "error": "unknown_method"})
            return
        with self._lock:
            answer = route(body)
        self._reply(handler, 200, answer)

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
    def _check_channel(self, channel: str) -> str | None:
        name = self._channel_name(self._channel_id(channel))
        if name in self._state.missing_channels:
            return "channel_not_found"
        if name in self._state.not_member_channels:
            return "not_in_channel"
        return None

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
        error = self._check_channel(channel)
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
            upload.update(
                title=item.get("title"), channel=body.get("channel_id"), thread_ts=body.get("thread_ts")
            )
            done.append({"id": upload["id"], "title": item.get("title"), "name": upload["filename"]})
        return {"ok": True, "files": done}


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
