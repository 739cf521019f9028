"""Publishing from the API: a POST validates its input, then publishes one event to
Redis. The app is made by create_app(), which reads REDIS_URL when it is called:

    export REDIS_URL=redis://localhost:6379/0
    flask --app publish_endpoint run
    # or with gunicorn: gunicorn -b :5000 'publish_endpoint:create_app()'

    curl -X POST localhost:5000/channels/orders/events \
         -H 'Content-Type: application/json' \
         -d '{"type": "created", "data": {"order": 7}}'
"""

# --8<-- [start:imports]
import json

from flask import Flask, request

from sidestream.bus import Bus, connect
from sidestream.errors import InvalidChannel, InvalidEvent, PayloadTooLarge

# --8<-- [end:imports]


# --8<-- [start:logic]
class PublishEventLogic:
    """Validate a request to publish, then publish it; knows nothing about Flask."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    def execute(self, channel: str, body: object) -> tuple[dict, int]:
        if not isinstance(body, dict) or "data" not in body:
            return {
                "error": "invalid_body",
                "detail": 'send {"type": ..., "data": ...}',
            }, 400
        try:
            event_id = self.bus.publish(
                channel, json.dumps(body["data"]), event=body.get("type")
            )
        except InvalidChannel as exc:
            return {"error": "invalid_channel", "detail": str(exc)}, 400
        except InvalidEvent as exc:
            return {"error": "invalid_type", "detail": str(exc)}, 400
        except PayloadTooLarge as exc:
            return {"error": "payload_too_large", "detail": str(exc)}, 413
        return {"id": event_id}, 201


# --8<-- [end:logic]


# --8<-- [start:view]
def create_app(bus: Bus | None = None) -> Flask:
    logic = PublishEventLogic(bus or Bus(connect()))
    app = Flask(__name__)

    @app.post("/channels/<channel>/events")
    def publish_event(channel: str) -> tuple[dict, int]:
        return logic.execute(channel, request.get_json(silent=True))

    return app


# --8<-- [end:view]
