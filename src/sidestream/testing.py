"""Helpers for your own tests: serve an app on a loopback port, the way a browser would reach it.

```python
import urllib.request

import flask

from sidestream.testing import serve_wsgi

app = flask.Flask(__name__)
app.get("/hello")(lambda: "hi")

with serve_wsgi(app) as base_url, urllib.request.urlopen(f"{base_url}/hello") as response:
    print(response.read())
    #> b'hi'
```
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication

__all__ = ["serve_wsgi"]


@contextmanager
def serve_wsgi(app: WSGIApplication, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve a WSGI app (Flask, ...) in a background thread for the duration of a `with` block.

    Uses Werkzeug's threaded server: one daemon thread per request, so long polls do not block
    each other, and one still waiting does not hold up the end of the block. The port is chosen
    by the OS.

    Args:
        app: The WSGI application.
        host: The address to listen on; keep the loopback default in tests.

    Yields:
        The base URL, like `http://127.0.0.1:54321` (no trailing slash).
    """
    from werkzeug.serving import make_server

    server = make_server(host, 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="serve_wsgi", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
