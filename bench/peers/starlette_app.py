"""sse-starlette with broadcaster on Redis: one pub/sub connection, a queue per subscriber.

Run by bench/peers.py in bench/peers/.venv (redis-py 7.4: broadcaster 0.3.x delivers nothing
on redis-py 8) as `uvicorn starlette_app:app --app-dir bench/peers`. Clients open
/events?channel=NAME; the bench PUBLISHes the event's text to the Redis channel NAME.
"""

import os
from contextlib import asynccontextmanager

from broadcaster import Broadcast
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.routing import Route

broadcast = Broadcast(os.environ["REDIS_URL"])


async def events(request):
    channel = request.query_params["channel"]

    async def stream():
        async with broadcast.subscribe(channel) as subscriber:
            async for event in subscriber:
                yield {"data": event.message}

    return EventSourceResponse(stream())


@asynccontextmanager
async def lifespan(app):
    await broadcast.connect()
    yield
    await broadcast.disconnect()


app = Starlette(routes=[Route("/events", events)], lifespan=lifespan)
