"""The lower floor: a plain ASGI app (no framework) that holds the connection and never sends.

bench/peers.py measures its memory per idle stream beside bare_service.py (uvicorn + Falcon), to
show what uvicorn itself costs per connection: the least any stream route on it can cost.
"""

from __future__ import annotations

import asyncio
from typing import Any

HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-store")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": b"retry: 3000\n\n", "more_body": True})
    await asyncio.get_running_loop().create_future()  # wait forever
