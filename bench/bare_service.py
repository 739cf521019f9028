"""The floor: a Falcon stream that holds the connection and never sends, no Redis, no hub.

bench/fanout.py measures its memory per idle stream, to show what uvicorn and Falcon cost by
themselves beside what the stream service adds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import falcon.asgi


class Events:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        async def stream() -> AsyncIterator[bytes]:
            yield b"retry: 3000\n\n"
            await asyncio.get_running_loop().create_future()  # wait forever

        resp.content_type = "text/event-stream"
        resp.stream = stream()


app = falcon.asgi.App()
app.add_route("/events", Events())
