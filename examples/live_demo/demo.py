"""The live demo behind the docs' widget: the Flask API and the Falcon stream service,
side by side
in one process on the embedded fakeredis, so `make serve` needs no Redis.

    REDIS_URL=memory:// python examples/live_demo/demo.py      # http://127.0.0.1:8001

In production the two are separate deployments sharing a real Redis; here one uvicorn
serves both so that they share the embedded server.
"""

# --8<-- [start:imports]
import json
import os

import uvicorn
from a2wsgi import WSGIMiddleware
from flask import Flask, request

from sidestream.access import allow_everyone
from sidestream.bus import AsyncBus, Bus, connect, connect_async
from sidestream.service import create_app

# --8<-- [end:imports]

DOCS = os.environ.get(
    "DEMO_ORIGINS", "http://127.0.0.1:8000,http://localhost:8000"
).split(",")
CHANNEL = "demo"

# --8<-- [start:api]
bus = Bus(connect())  # REDIS_URL=memory:// (make serve sets it): the embedded fakeredis
api = Flask(__name__)


@api.post("/api/messages")
def post_message() -> tuple[dict[str, str], int]:
    text = request.form.get("text", "").strip()
    if not 1 <= len(text) <= 280:
        return {
            "error": "invalid_parameter",
            "parameter": "text",
            "detail": "1 to 280 chars",
        }, 400
    event_id = bus.publish(CHANNEL, json.dumps({"text": text}), event="message")
    return {"id": event_id}, 201


@api.after_request
# The docs page is another origin: let it read our answers
def allow_the_docs(
    response,
):
    if request.headers.get("Origin") in DOCS:
        response.headers["Access-Control-Allow-Origin"] = request.headers["Origin"]
        response.headers["Vary"] = "Origin"
    return response


# --8<-- [end:api]


# --8<-- [start:service]
# The demo channel is public: anyone may read it, which the service logs as a warning.
service = create_app(
    AsyncBus(connect_async()), authorize=allow_everyone, cors_origins=DOCS, heartbeat=10
)
flask_app = WSGIMiddleware(api)


# /api/* to Flask, the rest (/events, /healthz) to Falcon
async def app(scope, receive, send):
    is_api = scope["type"] == "http" and scope["path"].startswith("/api/")
    await (flask_app if is_api else service)(scope, receive, send)


# --8<-- [end:service]


if __name__ == "__main__":
    port = int(os.environ.get("DEMO_PORT", "8001"))
    uvicorn.run(
        app, host="127.0.0.1", port=port, timeout_graceful_shutdown=3, access_log=False
    )
