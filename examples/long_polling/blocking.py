"""Long polling that blocks on Redis: the request waits inside XREAD BLOCK, not in a
sleep loop.

    flask --app blocking run --with-threads

REDIS_URL picks the Redis server; memory:// is an embedded fakeredis for this one
process.
"""

# --8<-- [start:imports]
from flask import Flask, Response, request

from sidestream.bus import Bus, connect
from sidestream.flask import flask_long_poll

# --8<-- [end:imports]


def create_app(bus: Bus | None = None) -> Flask:
    bus = bus or Bus(connect())
    app = Flask(__name__)

    # --8<-- [start:endpoint]
    @app.get("/notifications/poll")
    def poll_notifications() -> Response:
        # ?last_id=<id of the last event seen>&timeout=<seconds, 1 to 30>
        return flask_long_poll(bus, channel="notifications")

    # --8<-- [end:endpoint]

    # --8<-- [start:publish]
    @app.post("/notifications")
    def add_notification() -> tuple[dict, int]:
        data = (request.get_json(silent=True) or {}).get("data")
        if not isinstance(data, str):
            return {
                "error": "invalid_body",
                "detail": 'send JSON like {"data": "hello"}',
            }, 400
        return {"id": bus.publish("notifications", data)}, 201

    # --8<-- [end:publish]

    @app.get("/health")
    def health() -> dict:
        return {"ok": True}  # an ordinary request, answered while polls wait

    return app


app = create_app()
