"""Anti-pattern: the usual tutorial SSE service, one Redis subscription per client.

Translated with ONE shared redis-py client, as one would write it in Python. Two faults:

- every open stream holds a connection from the client's pool (redis-py 8: 100 at most
  by default), so client 101 gets a 500 (`MaxConnectionsError: Too many connections`);
- it never notices a closed client: nothing is written until an event comes, and after a
  disconnect uvicorn drops what is written without a word, so the subscription stays for
  good.
"""

# --8<-- [start:imports]
from collections.abc import AsyncIterator

import falcon.asgi
from redis.asyncio import Redis

from sidestream.bus import AsyncBus, connect_async, decode_live
from sidestream.sse import encode

# --8<-- [end:imports]


# --8<-- [start:naive]
def create_app(redis: Redis) -> falcon.asgi.App:
    bus = AsyncBus(redis)  # only for the key names and the payload format

    class Events:
        async def on_get(
            self, req: falcon.asgi.Request, resp: falcon.asgi.Response
        ) -> None:
            # Takes a connection from the shared pool, per client
            pubsub = redis.pubsub()
            await pubsub.subscribe(
                bus.live_channel(req.get_param("channel", required=True))
            )

            async def stream() -> AsyncIterator[bytes]:
                try:
                    # Waits on Redis, never on the client:
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            yield encode(decode_live(message["data"]))
                finally:
                    await pubsub.aclose()

            resp.content_type = "text/event-stream"
            resp.stream = stream()

    app = falcon.asgi.App()
    app.add_route("/events", Events())
    return app


# --8<-- [end:naive]

app = create_app(connect_async())
