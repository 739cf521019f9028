"""The fix: every process reads the same Redis through one hub, whatever it holds.

Publishing goes to Redis, not to a list in one process; each process's hub has ONE
pub/sub connection for all its streams and unsubscribes a channel when its last client
leaves.

On every server:

    REDIS_URL=redis://10.0.0.5:6379/0 uvicorn service_on_redis:app --port 8001
"""

# --8<-- [start:imports]
import json

import falcon
import falcon.asgi
from redis.asyncio import Redis

from sidestream.access import allow_everyone
from sidestream.bus import AsyncBus, connect_async
from sidestream.errors import InvalidChannel
from sidestream.service import StreamApp, create_app

# --8<-- [end:imports]


# --8<-- [start:service]
def create_service(redis: Redis, heartbeat: float = 15.0) -> StreamApp:
    bus = AsyncBus(redis)
    # GET /events?channel=news through the hub; these channels are public, said by name
    app = create_app(bus, authorize=allow_everyone, heartbeat=heartbeat)

    # Stands in for the API: it publishes to Redis, never to its own clients.
    class Publish:
        async def on_post(
            self, req: falcon.asgi.Request, resp: falcon.asgi.Response
        ) -> None:
            channel, data = (
                req.get_param("channel", required=True),
                await req.get_media(),
            )
            try:
                event_id = await bus.publish(channel, json.dumps(data))
            except InvalidChannel as exc:
                raise falcon.HTTPInvalidParam(str(exc), "channel") from None
            resp.status, resp.media = falcon.HTTP_201, {"id": event_id}

    app.add_route("/publish", Publish())
    return app


# --8<-- [end:service]

app = create_service(connect_async())  # REDIS_URL: the same Redis for every process
