"""A Flask API that publishes to a Mercure 1.0 hub: the publish route, discovery, the
cookie."""

# --8<-- [start:imports]
import json
import os
from pathlib import Path

from flask import Flask, abort, request, send_from_directory

from sidestream.errors import MercureError
from sidestream.mercure import (
    Publisher,
    add_discovery,
    set_subscriber_cookie,
    subscriber_token,
)
from sidestream.tokens import AccessTokenClaims, StreamTokens

# --8<-- [end:imports]

HUB_URL = os.environ.get("MERCURE_HUB_URL", "http://127.0.0.1:3000/.well-known/mercure")
SITE = os.environ.get("SITE_URL", "https://example.com")
SUBSCRIBER_LIFETIME = 300


# --8<-- [start:tokens]
def access_tokens(key_variable: str) -> StreamTokens:
    # Mercure 1.0 (draft-08) takes RFC 9068 access tokens: this API issues them
    # (iss, client_id) for the hub's resource identifier, its URL (aud).
    return StreamTokens.from_env(
        key_variable,
        audience=HUB_URL,
        issuer=SITE,
        claims_format=AccessTokenClaims(client_id=SITE),
    )


# Two keys, as the spec advises: one for publishers, one for subscribers.
publisher_tokens = access_tokens("MERCURE_PUBLISHER_JWT_KEY")
subscriber_tokens = access_tokens("MERCURE_SUBSCRIBER_JWT_KEY")
# One per process (it pools connections), for the version the hub speaks.
publisher = Publisher(HUB_URL, publisher_tokens, protocol="draft-08")
# --8<-- [end:tokens]

books: dict[int, dict[str, object]] = {1: {"title": "Dune", "last_update": None}}
app = Flask(__name__)


def topic(book_id: int) -> str:
    return f"{SITE}/books/{book_id}"


@app.errorhandler(404)
def not_found(error):
    return {"error": "no such book"}, 404


# The hub refused the update, or stayed down through the retries.
@app.errorhandler(MercureError)
def hub_failed(error: MercureError):
    return {"error": f"the update was not published: {error}"}, 502


# --8<-- [start:publish]
@app.post("/books/<int:book_id>")
def update_book(book_id: int):
    book = books.get(book_id) or abort(404)
    title = (request.get_json(silent=True) or {}).get("title")
    if not isinstance(title, str):
        return {"error": 'send JSON like {"title": "Dune"}'}, 400
    book["title"] = title
    # Private: only subscribers whose token grants this topic receive it. A 5xx or
    # a timeout is retried with the same id; anything else raises a typed
    # sidestream.errors.MercureError.
    book["last_update"] = publisher.publish(
        topic(book_id), json.dumps(book), private=True
    )
    return {"id": book["last_update"]}, 202


# --8<-- [end:publish]


# --8<-- [start:discovery]
@app.get("/books/<int:book_id>")
def show_book(book_id: int):
    book = books.get(book_id) or abort(404)
    response = app.json.response(book)
    # Link: <hub>; rel="mercure"; last-event-id="…" and Link: <topic>; rel="self"
    add_discovery(
        response, HUB_URL, topic=topic(book_id), last_event_id=book["last_update"]
    )
    # In a real API, grant only what the logged-in user may read.
    token = subscriber_token(
        subscriber_tokens, [topic(book_id)], lifetime=SUBSCRIBER_LIFETIME
    )
    # The cookie __Secure-mercure_access_token: HttpOnly, Secure, SameSite=Strict.
    set_subscriber_cookie(
        response, token, HUB_URL, max_age=SUBSCRIBER_LIFETIME, protocol="draft-08"
    )
    return response


# --8<-- [end:discovery]


@app.get("/")
def page():
    return '<!doctype html><ul id="updates"></ul><script src="/subscriber.js"></script>'


@app.get("/subscriber.js")
def script():
    return send_from_directory(Path(__file__).parent, "subscriber.js")
