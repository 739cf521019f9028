"""Typed exceptions. Each message says what went wrong and what to do about it."""

from __future__ import annotations


class SidestreamError(Exception):
    """Base class of every error the library raises on purpose."""


class InvalidChannel(SidestreamError, ValueError):
    """A channel name does not match the documented pattern."""


class PayloadTooLarge(SidestreamError, ValueError):
    """An event's data is larger than the configured cap."""


class InvalidCursor(SidestreamError, ValueError):
    """A cursor (last event id) is not a stream id of the form ``<ms>-<seq>``."""


class InvalidEvent(SidestreamError, ValueError):
    """An event to publish is malformed (data not text, or an event type with CR, LF or NUL)."""


class InvalidArgument(SidestreamError, ValueError):
    """A numeric argument (a wait timeout, a history limit) is out of its documented range."""


class HistoryGap(SidestreamError):
    """Events after the client's cursor were trimmed from the retained history.

    The client missed events it can never get: it must reload its state, then continue from
    ``latest_id``. ``reason`` is what the service's `reset` event says: ``"history-gap"``.
    """

    reason = "history-gap"

    def __init__(self, channel: str, after_id: str, oldest_id: str | None, latest_id: str) -> None:
        self.channel = channel
        self.after_id = after_id
        self.oldest_id = oldest_id
        self.latest_id = latest_id
        super().__init__(self._message())

    def _message(self) -> str:
        return (
            f"events on {self.channel!r} after {self.after_id} are no longer retained "
            f"(oldest retained: {self.oldest_id or 'none'}); reload state and continue from "
            f"{self.latest_id}"
        )


class CursorAhead(HistoryGap):
    """The client's cursor is newer than the newest event of the channel's stream.

    It comes from another stream (Redis was emptied or replaced, or another deployment's id) or
    was made up: what the client has is not what this stream holds, so it must reload its state
    and continue from ``latest_id``, exactly as after a [`HistoryGap`][sidestream.errors.HistoryGap]
    (``reason``: ``"cursor-ahead"``). Never silence: without this, every event up to the
    cursor's id would be taken for one the client already has.
    """

    reason = "cursor-ahead"

    def _message(self) -> str:
        return (
            f"cursor {self.after_id} on {self.channel!r} is ahead of the stream's newest event "
            f"{self.latest_id} (an id from another stream, or Redis lost its data); reload state "
            f"and continue from {self.latest_id}"
        )


class AccessDenied(SidestreamError):
    """Base of the two refusals an authorizer raises; ``reason`` is safe to show the client."""

    status = 403

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class Unauthorized(AccessDenied):
    """No credentials, or credentials that do not verify (HTTP 401)."""

    status = 401


class Forbidden(AccessDenied):
    """Valid credentials that do not grant what was asked (HTTP 403)."""

    status = 403


class InvalidToken(Unauthorized):
    """A stream token is missing, malformed, expired, for another audience or badly signed (401)."""


class InvalidTokenConfig(SidestreamError, ValueError):
    """`sidestream.tokens` was configured unsafely (no key, a short HMAC key, `alg: none`)."""


class InvalidUpdate(SidestreamError, ValueError):
    """A Mercure update breaks the protocol's rules (no topic, an id starting with ``#`` ...)."""


class MercureError(SidestreamError):
    """A Mercure hub refused an update. ``status`` is the HTTP status (``None``: no answer)."""

    def __init__(self, message: str, status: int | None = None, body: str = "") -> None:
        self.status = status
        self.body = body
        super().__init__(message)


class MercureBadRequest(MercureError):
    """400: the hub found the update malformed (a missing topic, a bad ``retry``)."""


class MercureUnauthorized(MercureError):
    """401: no publisher JWT, or one the hub cannot verify (wrong key, expired)."""


class MercureForbidden(MercureError):
    """403: the JWT's ``mercure.publish`` does not cover every topic of the update."""


class MercurePayloadTooLarge(MercureError):
    """413: the update is bigger than the hub (or a proxy in front of it) accepts."""


class MercureRateLimited(MercureError):
    """429: the hub (or a proxy) limits this publisher; wait `retry_after` seconds if given.

    Also importable from `sidestream.mercure`, where it was first defined.
    """

    def __init__(
        self, message: str, status: int | None = None, body: str = "", *, retry_after: float | None
    ) -> None:
        super().__init__(message, status, body)
        self.retry_after = retry_after


class MercureUnavailable(MercureError):
    """5xx, a timeout or a network error, still failing after every retry."""


class Unavailable(SidestreamError):
    """The stream service cannot take this stream now (shutting down, at its connection limit,
    or Redis not answering): HTTP 503 with `Retry-After`. Reconnect later or elsewhere."""


class InvalidConfig(SidestreamError, ValueError):
    """A setting is missing or invalid, such as a `SIDESTREAM_*` key in a Flask app's config.

    The message names the setting and says what to set it to.
    """


class NotInitialized(SidestreamError, RuntimeError):
    """The Flask extension was used for an app it was not initialized on, or outside any app:
    call `init_app(app)` in the app factory, and use it inside an app or request context."""
