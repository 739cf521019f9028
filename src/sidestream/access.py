"""Who may read which channels: the contract between the stream service and an authorizer.

The service calls an authorizer once per stream, before anything is sent. It returns a
[`Grant`][sidestream.access.Grant] or raises
[`Unauthorized`][sidestream.errors.Unauthorized] (401) /
[`Forbidden`][sidestream.errors.Forbidden] (403). `sidestream.tokens` provides one built on signed
stream tokens; any callable with this signature works. There is no default: reads are closed
until the app names an authorizer, and [`allow_everyone`][sidestream.access.allow_everyone] is
how an app with public channels says so.
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


async def allow_everyone(request: Any, channels: Sequence[str]) -> Grant:
    """The authorizer for public channels, said by name: everyone may *read* every channel.

    It grants no publishing (a WebSocket client gets `forbidden` for every message). The
    stream service logs a warning once at startup when it is given this authorizer, so an
    open service is never an accident.
    """
    return Grant()


allow_all = allow_everyone
"""The old name of [`allow_everyone`][sidestream.access.allow_everyone], kept for one release."""


def is_allow_everyone(authorize: object) -> bool:
    """True when `authorize` is [`allow_everyone`][sidestream.access.allow_everyone]."""
    return authorize is allow_everyone
