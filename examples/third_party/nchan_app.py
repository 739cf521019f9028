"""A Flask API beside Nchan: it publishes with an HTTP POST and decides who may
subscribe."""

# --8<-- [start:imports]
import json
import os

import httpx
from flask import Flask, request

from sidestream.bus import validate_channel
from sidestream.errors import InvalidChannel, InvalidToken
from sidestream.tokens import StreamTokens

# --8<-- [end:imports]

# nginx, seen from the API
NCHAN_URL = os.environ.get("NCHAN_URL", "http://127.0.0.1:8080")
# SIDESTREAM_TOKEN_KEY: the API signs stream tokens with it
tokens = StreamTokens.from_env()
# One per process: it pools connections
nchan = httpx.Client(base_url=NCHAN_URL, timeout=5)
app = Flask(__name__)


@app.errorhandler(InvalidChannel)
def bad_channel(error: InvalidChannel):
    return {"error": str(error)}, 400


# --8<-- [start:publish]
@app.post("/messages/<channel>")
def post_message(channel: str):
    text = (request.get_json(silent=True) or {}).get("text")
    if not isinstance(text, str):
        return {"error": 'send JSON like {"text": "hello"}'}, 400
    try:
        published = nchan.post(
            f"/internal/publish/{validate_channel(channel)}",
            content=json.dumps({"text": text}),
            headers={"X-EventSource-Event": "message", "Accept": "application/json"},
        )
        published.raise_for_status()
    except httpx.HTTPError as error:
        return {"error": f"Nchan did not take the message: {error}"}, 502
    # Nchan stores it (for Last-Event-ID) and tells how many subscribers were listening.
    return {"subscribers": published.json()["subscribers"]}, 202


# --8<-- [end:publish]


# --8<-- [start:authorize]
@app.get("/stream-auth")
def stream_auth():
    """Nchan asks before it opens a stream: 2xx lets it open, anything else goes to the
    client."""
    token = request.headers.get("X-Stream-Token")
    if not token:
        return {
            "error": "no stream token: add ?token=<a token from the API> to the URL"
        }, 401
    try:
        claims = tokens.verify(token)
    except InvalidToken as refused:
        return {"error": refused.reason}, 401
    channel = request.headers.get("X-Channel-Id", "")
    if not claims.may_read(channel):
        return {
            "error": f"{claims.subject or 'this token'} may not read {channel}"
        }, 403
    return {"subject": claims.subject, "channel": channel}


# --8<-- [end:authorize]
