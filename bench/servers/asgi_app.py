"""The ASGI app every ASGI server runs in bench/servers.py: plain ASGI, no framework.

The same routes as wsgi_app.py: `/api`, `/events?id=X&count=N&interval=S` (appends
`closed X <unix time>` to SERVERS_BENCH_LOG when the stream stops early: the server reported
`http.disconnect`, a send failed, or the task was cancelled) and `/ws` (echoes one message).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any
from urllib.parse import parse_qs

LOG = os.environ["SERVERS_BENCH_LOG"]
Scope = dict[str, Any]


def note(*fields: object) -> None:
    with open(LOG, "a") as log:
        log.write(" ".join(map(str, fields)) + "\n")


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        message = await asyncio.wait_for(receive(), 10)
        await send({"type": "websocket.send", "text": message.get("text")})
        await send({"type": "websocket.close", "code": 1000})
    elif scope["path"] == "/events":
        await events(scope, receive, send)
    elif scope["path"] == "/api":
        await respond(send, 200, json.dumps({"ok": True}).encode(), b"application/json")
    else:
        await respond(send, 404, b'{"error": "not found"}', b"application/json")


async def respond(send: Any, status: int, body: bytes, content_type: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def events(scope: Scope, receive: Any, send: Any) -> None:
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    stream = query.get("id", "-")
    count = int(query.get("count", "1000000"))
    interval = float(query.get("interval", "0.5"))
    headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    finished = False
    try:
        for n in range(count):
            body = f"id: {n}\ndata: {time.time()}\n\n".encode()
            await send({"type": "http.response.body", "body": body, "more_body": True})
            if n + 1 < count:
                done, _ = await asyncio.wait({watcher}, timeout=interval)
                if done:
                    return
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        finished = True
    finally:
        watcher.cancel()
        if not finished:
            note("closed", stream, time.time())
