"""Tell the browser early what a page will need: a Link header, and a 103 where the
server can."""

# --8<-- [start:imports]
import os
import time

from flask import Flask, request

# --8<-- [end:imports]

SCRIPT = "</static/app.js>; rel=preload; as=script"
# Off behind a proxy that does not understand a 103 from upstream (nginx before 1.29).
EARLY_HINTS = os.environ.get("EARLY_HINTS", "on") == "on"
RENDER_SECONDS = float(os.environ.get("RENDER_SECONDS", "0.2"))

app = Flask(__name__, static_folder=None)


def build_page() -> str:
    time.sleep(RENDER_SECONDS)  # stands in for the queries a real page waits on
    return '<!doctype html><title>page</title><script src="/static/app.js"></script>'


# --8<-- [start:page]
@app.get("/")
def page():
    # gunicorn >= 25 provides it
    send_early_hints = request.environ.get("wsgi.early_hints")
    if EARLY_HINTS and send_early_hints is not None:
        # A 103 goes out now, before the page is built
        send_early_hints([("Link", SCRIPT)])
    html = build_page()
    # The same hint on the final response: browsers preload from it, CDNs make 103s from
    # it.
    return html, {"Link": SCRIPT}


# --8<-- [end:page]


@app.get("/static/app.js")
def script():
    headers = {"Content-Type": "text/javascript", "Cache-Control": "max-age=3600"}
    return "document.title = 'app.js ran';", headers
