"""The WSGI app every WSGI server runs in bench/servers.py (Flask, like the reader's API).

- `GET /api`: a plain JSON answer, the request that must not wait behind streams.
- `GET /events?id=X&count=N&interval=S`: an event stream of N events, one every S seconds.
  When it stops early (the client left, the server shut it), its generator's `finally`
  appends `closed X <unix time>` to the file named by SERVERS_BENCH_LOG.
- `GET /ws`: a WebSocket that echoes one message (flask-sock, which needs the server to hand
  over its socket: Werkzeug and gunicorn do).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from flask import Flask, Response, request
from flask_sock import Sock

app = Flask(__name__)
sock = Sock(app)
LOG = os.environ["SERVERS_BENCH_LOG"]


def note(*fields: object) -> None:
    with open(LOG, "a") as log:
        log.write(" ".join(map(str, fields)) + "\n")


@app.get("/api")
def api() -> dict[str, bool]:
    return {"ok": True}


@app.get("/events")
def events() -> Response:
    stream = request.args.get("id", "-")
    count = int(request.args.get("count", "1000000"))
    interval = float(request.args.get("interval", "0.5"))

    def generate() -> Iterator[str]:
        finished = False
        try:
            for n in range(count):
                yield f"id: {n}\ndata: {time.time()}\n\n"
                if n + 1 < count:
                    time.sleep(interval)
            finished = True
        finally:
            if not finished:
                note("closed", stream, time.time())

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return Response(generate(), mimetype="text/event-stream", headers=headers)


@sock.route("/ws")
def echo(ws) -> None:  # type: ignore[no-untyped-def]
    ws.send(ws.receive(timeout=10))
