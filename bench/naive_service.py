"""The baseline: the seed's SSE service, one Redis pub/sub connection per client.

Each request opens its own Redis client (a shared redis-py 8 client would refuse the 101st
subscriber: its pool holds 100 connections), subscribes, and decodes and encodes every message
for itself. It never notices a closed client. Same bus and wire format as ours, so the bench
compares only the fan-out design.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import falcon.asgi
import redis.asyncio

from sidestream.bus import AsyncBus, connect_async, decode_live
from sidestream.sse import encode

URL = os.environ["REDIS_URL"]
bus = AsyncBus(connect_async(URL), prefix=os.environ["BENCH_PREFIX"])


class Events:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        channel = req.get_param("channel", required=True)
        client = redis.asyncio.Redis.from_url(URL)  # one connection per client
        pubsub = client.pubsub()
        await pubsub.subscribe(bus.live_channel(channel))

        async def stream() -> AsyncIterator[bytes]:
            try:
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        yield encode(decode_live(message["data"]))  # per client, per event
            finally:
                await pubsub.aclose()
                await client.aclose()

        resp.content_type = "text/event-stream"
        resp.stream = stream()


app = falcon.asgi.App()
app.add_route("/events", Events())
