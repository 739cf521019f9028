"""flask-sse: every stream holds a worker thread (or greenlet) and its own Redis pub/sub connection.

Run by bench/peers.py in bench/peers/.venv under gunicorn (gthread or gevent) as
`gunicorn flask_sse_app:app --chdir bench/peers`. Clients open /stream?channel=NAME; the bench
PUBLISHes flask-sse's own JSON ({"data": ...}) to the Redis channel NAME. gunicorn sends the
response head only with the first event, so the bench waits on PUBSUB NUMSUB, not on the head.
"""

import os

from flask import Flask
from flask_sse import sse

app = Flask(__name__)
app.config["REDIS_URL"] = os.environ["REDIS_URL"]
app.register_blueprint(sse, url_prefix="/stream")
