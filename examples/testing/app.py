"""The API these tests test: it publishes events and serves a long poll (a stand-in for
yours).

    flask --app app run --with-threads

REDIS_URL picks the Redis server; memory:// is an embedded fakeredis for this one
process.
"""

from flask import Flask, Response, request

from sidestream.bus import Bus, connect
from sidestream.errors import InvalidChannel
from sidestream.flask import flask_long_poll


def create_app(bus: Bus | None = None) -> Flask:
    bus = bus or Bus(connect())
    app = Flask(__name__)

    @app.post("/channels/<channel>/events")
    def publish(channel: str) -> tuple[dict, int]:
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            return {
                "error": "invalid_body",
                "detail": 'send JSON like {"text": "hello"}',
            }, 400
        try:
            return {"id": bus.publish(channel, body["text"])}, 201
        except InvalidChannel as exc:
            return {"error": "invalid_channel", "detail": str(exc)}, 400

    @app.get("/channels/<channel>/poll")
    def poll(channel: str) -> Response:
        # ?last_id=<the last id seen>&timeout=<seconds>
        return flask_long_poll(bus, channel)

    return app
