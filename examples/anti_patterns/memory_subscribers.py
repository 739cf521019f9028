"""Anti-pattern: the open streams kept in a module-level list, and "publishing" by
iterating it.

A common Rails sketch keeps its connections in a class variable; this is the same in
Falcon. It works on one process, and on a laptop. Run two (two servers, or `uvicorn
--workers 2`):

    uvicorn memory_subscribers:app --port 8001
    uvicorn memory_subscribers:app --port 8002

and an event POSTed to one reaches only the browsers that happen to be connected to that
one.
"""

# --8<-- [start:imports]
import asyncio
import json

import falcon.asgi

from sidestream.sse import Event, encode

# --8<-- [end:imports]

# --8<-- [start:list]
# The clients of THIS process, and no others:
subscribers: list[asyncio.Queue[bytes]] = []


class Events:
    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response
    ) -> None:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        subscribers.append(queue)

        async def stream():
            try:
                yield b": connected\n\n"
                while True:
                    yield await queue.get()
            finally:
                subscribers.remove(queue)

        resp.content_type = "text/event-stream"
        resp.stream = stream()


class Publish:
    async def on_post(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response
    ) -> None:
        chunk = encode(Event(json.dumps(await req.get_media())))
        for queue in subscribers:  # "everyone" means everyone connected to this process
            queue.put_nowait(chunk)
        resp.media = {"delivered": len(subscribers)}


# --8<-- [end:list]

app = falcon.asgi.App()
app.add_route("/events", Events())
app.add_route("/publish", Publish())
