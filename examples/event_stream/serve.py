"""An event stream over plain HTTP (standard library only): the headers, retry, and
resuming.

Run `python serve.py` and open the address it prints (a free port, or set PORT: the
docs' own `mkdocs serve` has 8000).
"""

# --8<-- [start:imports]
import dataclasses
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sidestream.sse import Event, encode

# --8<-- [end:imports]

PAGE = b"""<!doctype html><meta charset="utf-8"><title>events</title>
<pre id="log"></pre>
<script type="module">
  import { listen } from "/client.js";
  const log = document.getElementById("log");
  listen("/events", ["message"], (event) => {
    log.textContent += JSON.stringify(event) + "\\n";
  });
</script>"""


class EventStream(BaseHTTPRequestHandler):
    history = tuple(Event(f"update {n}", id=str(n)) for n in range(1, 6))
    per_connection = 2  # hang up after 2 events, to show the browser resuming

    # --8<-- [start:stream]
    def send_events(self) -> None:
        # A browser that reconnects sends the last id it saw.
        last_id = self.headers.get("Last-Event-ID")
        ids = [event.id for event in self.history]
        start = ids.index(last_id) + 1 if last_id and last_id in ids else 0
        batch = self.history[start : start + self.per_connection]
        if not batch:
            self.send_response(204)  # EventSource stops reconnecting
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Accel-Buffering", "no")  # nginx: don't buffer
        self.end_headers()
        first, *rest = batch
        retry = dataclasses.replace(first, retry=500)  # reconnect in 0.5 s
        for event in [retry, *rest]:
            self.wfile.write(encode(event))
            self.wfile.flush()
        # --8<-- [end:stream]

    def do_GET(self) -> None:
        if self.path == "/events":
            self.send_events()
        elif self.path in ("/", "/client.js"):
            js = self.path == "/client.js"
            body = (Path(__file__).parent / "client.js").read_bytes() if js else PAGE
            self.send_response(200)
            self.send_header("Content-Type", "text/javascript" if js else "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)


if __name__ == "__main__":
    server = ThreadingHTTPServer(
        ("127.0.0.1", int(os.environ.get("PORT", "0"))), EventStream
    )
    print(f"open http://127.0.0.1:{server.server_port}/", flush=True)
    server.serve_forever()
