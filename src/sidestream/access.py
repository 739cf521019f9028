"""Who may read which channels: the contract between the stream service and an authorizer.

The service calls an authorizer once per stream, before anything is sent. It returns a
[`Grant`][sidestream.access.Grant] or raises
[`Unauthorized`][sidestream.errors.Unauthorized] (401) /
[`Forbidden`][sidestream.errors.Forbidden] (403). `sidestream.tokens` provides one built on signed
stream tokens; any callable with this signature works.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias


@dataclass(frozen=True)
class Grant:
    """What an authorizer allowed.

    Attributes:
        subject: who the stream belongs to (for logs and metrics), if known.
        expires_at: Unix time after which the stream must close (the client reconnects with a
            fresh token and resumes by id); ``None`` for no expiry.
        publish: Channels a WebSocket client may publish to (``"*"`` for every channel); empty
            for read-only, the default. `sidestream.tokens` fills it from ``mercure.publish``.
    """

    subject: str | None = None
    expires_at: float | None = None
    publish: tuple[str, ...] = ()

    def may_publish(self, channel: str) -> bool:
        """True when `channel` is in `publish` by exact name, or `publish` holds ``"*"``."""
        return channel in self.publish or "*" in self.publish


# (request, channels) -> Grant. The request is the framework's request object (falcon.asgi.Request
# in the service); typed as Any so this module imports no framework.
Authorizer: TypeAlias = Callable[[Any, Sequence[str]], Awaitable[Grant]]


async def allow_all(request: Any, channels: Sequence[str]) -> Grant:
    """The authorizer for public channels: everyone may read everything."""
    return Grant()
