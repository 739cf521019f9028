"""The stream service as the in-process tests build it: a hub on the test's bus, quiet enough
for a test (a one-minute heartbeat, no signal handlers), public channels unless told."""

from __future__ import annotations

from typing import Any

from sidestream.access import allow_everyone
from sidestream.bus import AsyncBus
from sidestream.hub import Hub
from sidestream.service import StreamApp, create_app


def make_app(
    bus: AsyncBus,
    *,
    heartbeat: float = 60,
    queue_size: int = 256,
    cutoff_grace: float = 5.0,
    ping_interval: float = 10.0,
    **options: Any,
) -> StreamApp:
    """`create_app(hub=...)` on `bus`; `options` go to `create_app` (`authorize` defaults to
    `allow_everyone`, said by name)."""
    hub = Hub(
        bus,
        heartbeat=heartbeat,
        queue_size=queue_size,
        cutoff_grace=cutoff_grace,
        ping_interval=ping_interval,
    )
    options.setdefault("authorize", allow_everyone)
    return create_app(hub=hub, drain_on_signal=False, **options)
