"""Anti-pattern: a dashboard that changes every few seconds, pushed over an open stream.

Every open dashboard holds a connection all day to receive six events a minute, most of
them the same numbers again. Nothing here is broken; it is just far more than the job
needs (see dashboard_poll.py for the same dashboard served by plain, cacheable
requests).

    uvicorn dashboard_stream:app --port 8001
"""

# --8<-- [start:imports]
import asyncio
from collections.abc import AsyncIterator, Callable

import falcon.asgi

# --8<-- [end:imports]


# --8<-- [start:stream]
def create_app(load_stats: Callable[[], dict], every: float = 10.0) -> falcon.asgi.App:
    class DashboardStream:
        async def on_get(
            self, req: falcon.asgi.Request, resp: falcon.asgi.Response
        ) -> None:
            async def emit() -> AsyncIterator[falcon.asgi.SSEvent]:
                # One connection per open dashboard, for as long as it is open
                while True:
                    yield falcon.asgi.SSEvent(json=load_stats(), event="stats")
                    await asyncio.sleep(every)

            resp.sse = emit()

    app = falcon.asgi.App()
    app.add_route("/dashboard/stream", DashboardStream())
    return app


# --8<-- [end:stream]


def count_orders() -> dict:
    return {"orders_today": 0}  # your query here


app = create_app(count_orders)
