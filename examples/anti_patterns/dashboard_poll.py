"""The fix for a dashboard refreshed every 10 s: a plain GET that HTTP caches can
answer.

No connection is held between two refreshes. `Cache-Control: max-age=10` lets the
browser (and a shared cache such as nginx or a CDN, see dashboard_cache.conf) reuse the
answer for one refresh period; after that, the ETag turns the next request into a
conditional one, answered with an empty `304 Not Modified` while the numbers have not
changed.

    flask --app dashboard_poll run
"""

# --8<-- [start:imports]
from collections.abc import Callable

from flask import Flask, Response, jsonify, request

# --8<-- [end:imports]

REFRESH_SECONDS = 10


# --8<-- [start:poll]
def create_app(load_stats: Callable[[], dict]) -> Flask:
    app = Flask(__name__)

    @app.get("/dashboard")
    def dashboard() -> Response:
        response = jsonify(load_stats())
        response.cache_control.public = (
            True  # the same for every viewer: shared caches may keep it
        )
        response.cache_control.max_age = REFRESH_SECONDS  # fresh for one refresh period
        response.add_etag()  # a hash of the body
        return response.make_conditional(request)  # If-None-Match matches: 304, no body

    return app


# --8<-- [end:poll]


def count_orders() -> dict:
    return {"orders_today": 0}  # your query here


app = create_app(count_orders)
