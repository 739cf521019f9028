"""The origin behind Pushpin: answers GET /events/NAME with a GRIP stream hold on channel NAME.

Run by bench/peers.py (the project's Python, standard library only). Pushpin keeps the client's
connection and subscribes it; the bench then publishes through Pushpin's HTTP control API.
"""

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Hold(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        channel = self.path.rsplit("/", 1)[-1]
        body = b": open\n\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Grip-Hold", "stream")
        self.send_header("Grip-Channel", channel)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


ThreadingHTTPServer.request_queue_size = 4096
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Hold).serve_forever()
