"""The lowest floor: a plain ASGI app (no framework, no hub, no Redis) that holds each connection.

Two benchmarks measure memory per connection against it, on the same uvicorn, to show what the
server itself costs:

- bench/peers.py opens event streams (`GET`): it answers with the stream's head and one
  `retry:` line, then never sends again (beside bare_service.py, uvicorn + Falcon);
- bench/ws_rtt.py opens WebSockets: it accepts, sends one `ready` frame, and waits for the
  disconnect (uvicorn + websockets alone).

What the stream service holds beyond this is its own cost (and Falcon's).
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
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": '{"type": "ready"}'})
        while (await receive())["type"] != "websocket.disconnect":
            pass
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": b"retry: 3000\n\n", "more_body": True})
    await asyncio.get_running_loop().create_future()  # hold the stream until the server stops
