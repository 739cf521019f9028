"""Quickstart, the Flask API: it publishes events and gives the page a stream token.

flask --app api run    # REDIS_URL and SIDESTREAM_TOKEN_KEY set: see the Quickstart
"""

import json
import os
import re
from pathlib import Path

from flask import Flask, request, send_from_directory

from sidestream.errors import Forbidden, Unauthorized
from sidestream.flask import Sidestream


def current_user() -> str:
    # DEMO ONLY: the caller names itself in a header, so anyone can be anyone.
    # Use your real login here (a session, a bearer token): see the page
    # "Authentication hand-off".
    user = request.headers.get("X-Demo-User", "")
    if not re.fullmatch(r"[a-z0-9-]{1,40}", user):
        raise Unauthorized("send X-Demo-User: <name> (a-z, 0-9, '-')")  # 401 JSON
    return user


def may_read(channel: str) -> bool:  # GET /poll/<channel>, the long-poll fallback
    return channel == f"user:{current_user()}"


STREAM_URL = os.environ.get("STREAM_URL", "http://127.0.0.1:8001/events")
# Every Redis key and channel starts with this; the stream service uses the same.
PREFIX = os.environ.get("SIDESTREAM_KEY_PREFIX", "sidestream:")

app = Flask(__name__)
app.config.update(SIDESTREAM_STREAM_URL=STREAM_URL, SIDESTREAM_KEY_PREFIX=PREFIX)
# REDIS_URL and SIDESTREAM_TOKEN_KEY come from the environment.
sidestream = Sidestream(app, authorize_read=may_read)


@app.post("/channels/<path:channel>/events")
def publish(channel: str):
    user = current_user()
    if channel != f"user:{user}":  # a user may publish only to their own channel
        raise Forbidden(f"{user} may publish only to user:{user}")  # 403 JSON
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or "data" not in body:
        return {"error": "invalid_body", "detail": 'send {"data": ...}'}, 400
    return {"id": sidestream.publish(channel, json.dumps(body["data"]))}, 201


@app.get("/stream-token")
@sidestream.token_endpoint  # answers {"token", "url", "channels", "expires_in"}
def stream_token():
    user = current_user()
    return user, [f"user:{user}"]  # who it is, and the channels its token may read


@app.get("/")
def page():
    return send_from_directory(Path(__file__).parent, "index.html")
