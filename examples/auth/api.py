"""The Flask API's half of the hand-off: it knows who the user is, so it signs the
stream token."""

# --8<-- [start:imports]
import json
import os
import re
import secrets
from pathlib import Path
from urllib.parse import urlencode

from flask import Flask, request, send_from_directory, session

from sidestream.bus import Bus, connect
from sidestream.tokens import StreamTokens

# --8<-- [end:imports]

STREAM_URL = os.environ.get("STREAM_URL", "http://127.0.0.1:8001/events")
# The token travels in a URL (EventSource cannot send headers), so it lives briefly and
# only reads: when it expires the service ends the stream and client.js fetches a new
# one.
TOKEN_LIFETIME = int(os.environ.get("STREAM_TOKEN_LIFETIME", "120"))
USER = re.compile(r"[a-z0-9-]{1,40}")  # user names fit in channel names: user:<name>

tokens = StreamTokens.from_env()  # SIDESTREAM_TOKEN_KEY, shared with the stream service
bus = Bus(connect())  # REDIS_URL (memory:// = the embedded fakeredis)
app = Flask(__name__)
app.secret_key = os.environ.get("FLASK_SECRET_KEY") or secrets.token_hex(32)


@app.post("/login")  # stands in for your real login
def login():
    user = (request.get_json(silent=True) or {}).get("user", "")
    if not USER.fullmatch(user):
        return {"error": "user must be 1-40 of a-z, 0-9 and '-'"}, 400
    session["user"] = user
    return {"user": user}


# --8<-- [start:issue]
@app.get("/stream-token")
def stream_token():
    user = session.get("user")
    if user is None:
        return {"error": "log in first"}, 401
    # what this user may read, decided here, where the user is known
    channels = [f"user:{user}"]
    token = tokens.issue(user, subscribe=channels, lifetime=TOKEN_LIFETIME)
    url = f"{STREAM_URL}?{urlencode({'channel': channels, 'token': token}, doseq=True)}"
    return (
        {"url": url, "expires_in": TOKEN_LIFETIME},
        200,
        {"Cache-Control": "no-store"},
    )


# --8<-- [end:issue]


@app.post("/notify/<user>")
def notify(user: str):
    me = session.get("user")
    if me is None:
        return {"error": "log in first"}, 401
    if not USER.fullmatch(user):
        return {"error": f"no such user: {user!r}"}, 404
    if user != me:  # your app's rule goes here; in this demo: your own channel only
        return {"error": f"{me} may not notify {user}"}, 403
    body = request.get_json(silent=True)
    if body is None:
        return {"error": "the body must be JSON"}, 400
    return {"id": bus.publish(f"user:{user}", json.dumps(body))}, 202


@app.get("/")
def page():
    return (
        '<!doctype html><p id="status"></p><ul id="events"></ul>'
        '<script type="module" src="/client.js"></script>'
    )


@app.get("/client.js")
def client_js():
    return send_from_directory(Path(__file__).parent, "client.js")


@app.get("/stream.js")  # the one browser client, which client.js imports
def stream_js():
    return send_from_directory(Path(__file__).parent.parent / "client", "stream.js")
