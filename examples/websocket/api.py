"""The chat's API side: it knows the user, so it issues the token that lets them join a
room."""

# --8<-- [start:imports]
import os
import re
import secrets
from pathlib import Path
from urllib.parse import urlencode

from flask import Flask, request, send_from_directory, session

from sidestream.tokens import StreamTokens

# --8<-- [end:imports]

CHAT_URL = os.environ.get("CHAT_URL", "ws://127.0.0.1:8002/ws")
TOKEN_LIFETIME = int(os.environ.get("CHAT_TOKEN_LIFETIME", "300"))
# Users and rooms fit in channel names: room:<name>
NAME = re.compile(r"[a-z0-9-]{1,40}")

tokens = StreamTokens.from_env()  # SIDESTREAM_TOKEN_KEY, shared with the service
app = Flask(__name__)
app.secret_key = os.environ.get("FLASK_SECRET_KEY") or secrets.token_hex(32)


@app.post("/login")  # stands in for your real login
def login():
    user = (request.get_json(silent=True) or {}).get("user", "")
    if not NAME.fullmatch(user):
        return {"error": "user must be 1-40 of a-z, 0-9 and '-'"}, 400
    session["user"] = user
    return {"user": user}


# --8<-- [start:token]
@app.get("/chat-token")
def chat_token():
    user, room = session.get("user"), request.args.get("room", "")
    if user is None:
        return {"error": "log in first"}, 401
    if not NAME.fullmatch(room):
        return {"error": "room must be 1-40 of a-z, 0-9 and '-'"}, 400
    channel = f"room:{room}"  # your rules go here: may this user join this room?
    token = tokens.issue(
        user, subscribe=[channel], publish=[channel], lifetime=TOKEN_LIFETIME
    )
    url = f"{CHAT_URL}?{urlencode({'channel': channel})}"  # the token goes in a header
    return (
        {"url": url, "token": token, "channel": channel},
        200,
        {"Cache-Control": "no-store"},
    )


# --8<-- [end:token]


@app.get("/")
def page():
    return (
        '<!doctype html><p id="status">connecting</p><ul id="messages"></ul>'
        '<form id="say"><input id="text" autocomplete="off">'
        "<button>Send</button></form>"
        '<script src="/client.js"></script>'
    )


@app.get("/client.js")
def client_js():
    return send_from_directory(Path(__file__).parent, "client.js")
