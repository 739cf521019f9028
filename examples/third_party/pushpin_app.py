"""A Flask API behind Pushpin: a normal request opens a stream, one HTTP POST publishes
to it."""

# --8<-- [start:imports]
import json
import os
import uuid

import httpx
import jwt
from flask import Flask, Response, request

from sidestream.bus import validate_channel
from sidestream.errors import InvalidChannel
from sidestream.sse import Event, comment, encode

# --8<-- [end:imports]

# pushpin.conf: [handler] push_in_http_port is the control API; [proxy] sig_key signs
# Grip-Sig.
CONTROL_URL = os.environ.get("PUSHPIN_CONTROL_URL", "http://127.0.0.1:5561")
SIG_KEY = os.environ["PUSHPIN_SIG_KEY"]  # never Pushpin's default "changeme"
KEEP_ALIVE_SECONDS = 20  # Pushpin sends ": keep-alive" after this long without an event

# One per process: it pools connections
pushpin = httpx.Client(base_url=CONTROL_URL, timeout=5)
app = Flask(__name__)


@app.errorhandler(InvalidChannel)
def bad_channel(error: InvalidChannel):
    return {"error": str(error)}, 400


# --8<-- [start:hold]
def came_through_pushpin() -> bool:
    """Pushpin signs every request it forwards; a request straight to the API has no
    signature."""
    signature, must_expire = request.headers.get("Grip-Sig", ""), {"require": ["exp"]}
    try:
        jwt.decode(
            signature,
            SIG_KEY,
            algorithms=["HS256"],
            issuer="pushpin",
            options=must_expire,
        )
    except jwt.InvalidTokenError:
        return False
    return True


@app.get("/events/<channel>")
def events(channel: str):
    if not came_through_pushpin():
        return {"error": "open this stream through Pushpin, not on the API itself"}, 400
    # An ordinary short request: check the user's session or token here, as in any view.
    grip = {
        "Grip-Hold": "stream",  # Pushpin keeps the client's connection open...
        "Grip-Channel": validate_channel(channel),  # ...subscribed to this channel
        "Grip-Keep-Alive": (
            f": keep-alive\\n\\n; format=cstring; timeout={KEEP_ALIVE_SECONDS}"
        ),
    }
    return Response(comment("stream open"), mimetype="text/event-stream", headers=grip)


# --8<-- [end:hold]


# --8<-- [start:publish]
@app.post("/messages/<channel>")
def post_message(channel: str):
    text = (request.get_json(silent=True) or {}).get("text")
    if not isinstance(text, str):
        return {"error": 'send JSON like {"text": "hello"}'}, 400
    event = Event(json.dumps({"text": text}), event="message", id=uuid.uuid4().hex)
    # GRIP's http-stream format: Pushpin writes `content` as-is to every held stream.
    stream_format = {"content": encode(event).decode()}
    item = {
        "channel": validate_channel(channel),
        "id": event.id,
        "http-stream": stream_format,
    }
    try:
        pushpin.post("/publish/", json={"items": [item]}).raise_for_status()
    except httpx.HTTPError as error:
        return {"error": f"Pushpin did not take the message: {error}"}, 502
    return {"id": event.id}, 202


# --8<-- [end:publish]
