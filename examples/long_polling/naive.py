"""Long polling done naively: the request loops, querying the database every half
second.

    flask --app naive run --with-threads

It works, and every waiting client costs two SQL queries a second, and an answer comes
up to half a second after the notification was written.
"""

# --8<-- [start:imports]
import time

from flask import Flask, request
from notifications_db import notifications_after, writes

# --8<-- [end:imports]

app = Flask(__name__)
app.register_blueprint(writes)


# --8<-- [start:endpoint]
@app.get("/notifications/poll")
def poll_notifications() -> dict:
    last_id = request.args.get("last_id", 0, type=int)
    timeout = min(request.args.get("timeout", 30, type=int), 30)
    deadline = time.time() + timeout
    while time.time() < deadline:
        events = notifications_after(last_id)
        if events:
            return {"events": events, "last_id": events[-1]["id"]}
        time.sleep(0.5)  # the whole trick: look again in half a second
    return {"events": [], "last_id": last_id}


# --8<-- [end:endpoint]
