"""The anti-pattern: an SSE stream served by the stateless API's own sync workers.

Run it the way the API is deployed, with a sync worker pool:

    gunicorn --workers 2 --worker-class sync stream_from_api:app

Two browsers with the page open now hold both workers, and every other request waits.
"""

# --8<-- [start:imports]
import time

from flask import Flask, Response

# --8<-- [end:imports]

app = Flask(__name__)


# --8<-- [start:stream]
@app.get("/events")
def events() -> Response:
    def stream():  # runs inside a sync worker for as long as the browser stays
        while True:
            yield f"data: {time.time()}\n\n"
            time.sleep(1)

    return Response(stream(), mimetype="text/event-stream")


# --8<-- [end:stream]


@app.get("/api/orders")
def orders() -> dict[str, list[str]]:
    return {"orders": []}  # an ordinary, fast, stateless endpoint
