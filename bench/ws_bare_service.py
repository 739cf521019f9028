"""The floor for bench/ws_rtt.py's memory figure: a bare ASGI WebSocket app on the same uvicorn.

It accepts, sends one `ready` frame, and waits for the disconnect: no Falcon, no hub, no Redis.
What sidestream's sockets take beyond this is sidestream's (and Falcon's) own cost.
"""

from __future__ import annotations

from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] != "websocket":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": '{"type": "ready"}'})
    while (await receive())["type"] != "websocket.disconnect":
        pass
