"""One Flask API wired by the Sidestream extension: publish, long poll, stream tokens.

    SIDESTREAM_TOKEN_KEY=<32+ random bytes> flask --app app run --with-threads

REDIS_URL picks Redis (memory:// for the embedded fakeredis); STREAM_URL is the
service's /events.
"""

# --8<-- [start:imports]
import json
import os
import re
import secrets

from flask import Flask, request, session

from sidestream.errors import Unauthorized
from sidestream.flask import Sidestream

# --8<-- [end:imports]

USER = re.compile(r"[a-z0-9-]{1,40}")  # user names fit in channel names: user:<name>

# --8<-- [start:extension]
# No app yet: each app given to init_app() gets its own Redis pool
sidestream = Sidestream()


@sidestream.authorize_read  # asked before a long poll waits: True lets it read
def may_read(channel: str) -> bool:
    return channel == "news" or channel == f"user:{session.get('user')}"


def create_app(config: dict | None = None) -> Flask:
    app = Flask(__name__)
    app.secret_key = os.environ.get("FLASK_SECRET_KEY") or secrets.token_hex(32)
    app.config["SIDESTREAM_STREAM_URL"] = os.environ.get(
        "STREAM_URL", "http://127.0.0.1:8001/events"
    )
    app.config["SIDESTREAM_TOKEN_TTL"] = (
        120  # the token travels in a URL: keep it short-lived
    )
    app.config.update(config or {})  # tests (and your settings) override the two above
    sidestream.init_app(app)  # checks SIDESTREAM_*; serves GET /poll/<channel>
    # --8<-- [end:extension]

    def current_user() -> str:
        if "user" not in session:
            raise Unauthorized("log in first")  # the extension answers 401 JSON
        return session["user"]

    @app.post("/login")  # stands in for your real login
    def login():
        user = (request.get_json(silent=True) or {}).get("user", "")
        if not USER.fullmatch(user):
            return {
                "error": "invalid_user",
                "detail": "user must be 1-40 of a-z, 0-9, '-'",
            }, 400
        session["user"] = user
        return {"user": user}

    # --8<-- [start:publish]
    @app.post("/channels/<path:channel>/events")
    def publish_event(channel: str):
        current_user()
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or "data" not in body:
            return {
                "error": "invalid_body",
                "detail": 'send {"type": ..., "data": ...}',
            }, 400
        # A bad channel name or type is a 400, data over the cap a 413: the extension's
        # JSON errors.
        return {
            "id": sidestream.publish(
                channel, json.dumps(body["data"]), body.get("type")
            )
        }, 201

    # --8<-- [end:publish]

    # --8<-- [start:token]
    @app.get("/stream-token")
    @sidestream.token_endpoint  # answers {"token", "url", "channels", "expires_in"}
    def stream_token():
        user = current_user()
        # the subject, and the channels its token may read
        return user, [f"user:{user}"]

    # --8<-- [end:token]
    return app


app = create_app()
