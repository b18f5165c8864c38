"""Slack incoming-webhook sink for teams without a bot.

``WebhookSink(client)`` / ``WebhookSink.from_url(url, *, timeout=10, max_retries=2, max_retry_after=30.0,
backoff_factor=0.5)``; ``send(notification) -> DeliveryResult``.

A webhook cannot edit messages or reply in threads and returns no message id, so every notification is a
new message in the webhook's channel (the rendering still says why it was sent; a resolution says
resolved). ``DeliveryResult.ts`` is therefore ``None``. 429 / 5xx / network errors are retryable;
400 (bad payload), 403 (``action_prohibited``, ``invalid_token``), 404 (``no_service``,
``channel_not_found``) and 410 (``channel_is_archived``) are permanent. The URL is a secret: it is never
logged or put in messages.
"""

from __future__ import annotations

from slack_sdk.webhook import WebhookClient

from alerts.model import Notification
from alerts.render import RenderOptions, render_message
from alerts.sinks.base import DeliveryResult
from alerts.sinks.slack import retry_handlers

__all__ = ["WebhookSink"]

_FIXES = {
    400: "Slack rejected the payload (a livewatch rendering bug; please report it)",
    403: "the webhook is not allowed to post (revoked or restricted); create a new webhook URL",
    404: "the webhook URL is unknown or its channel is gone; create a new webhook URL",
    410: "the webhook's channel is archived; create a webhook for another channel",
}


class WebhookSink:
    """Posts each notification as a new message through an incoming webhook."""

    channel_label = "webhook"

    def __init__(self, client: WebhookClient, *, render_options: RenderOptions | None = None) -> None:
        self.client = client
        self.render_options = render_options or RenderOptions()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        timeout: int = 10,
        max_retries: int = 2,
        max_retry_after: float = 30.0,
        backoff_factor: float = 0.5,
    ) -> WebhookSink:
        """A sink over slack_sdk's ``WebhookClient`` with livewatch's retry handlers."""
        handlers = retry_handlers(
            max_retries=max_retries, max_retry_after=max_retry_after, backoff_factor=backoff_factor
        )
        return cls(WebhookClient(url, timeout=timeout, retry_handlers=handlers))

    def __repr__(self) -> str:  # never show the URL (it is a credential)
        return "WebhookSink(url=<hidden>)"

    def send(self, notification: Notification) -> DeliveryResult:
        message = render_message(notification, self.render_options)
        try:
            response = self.client.send(
                text=message.text, blocks=message.blocks, unfurl_links=False, unfurl_media=False
            )
        except OSError as exc:  # URLError, TimeoutError, ConnectionError are all OSErrors
            return DeliveryResult.failure(
                f"could not reach the Slack webhook ({type(exc).__name__}: {exc}); will retry", retryable=True
            )
        status, body = response.status_code, (response.body or "").strip()
        if status == 200:
            return DeliveryResult.success(self.channel_label, None)
        if status == 429 or status >= 500:
            return DeliveryResult.failure(
                f"Slack webhook answered HTTP {status} {body}; will retry", retryable=True
            )
        fix = _FIXES.get(status, "not retried")
        return DeliveryResult.failure(f"Slack webhook answered HTTP {status} {body}: {fix}", retryable=False)
