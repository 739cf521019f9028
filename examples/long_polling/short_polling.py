"""Short polling: the client asks "anything new?" on a timer; the API answers at once.

flask --app short_polling run
"""

# --8<-- [start:imports]
from flask import Flask, request
from notifications_db import notifications_after, writes

# --8<-- [end:imports]

app = Flask(__name__)
app.register_blueprint(writes)


# --8<-- [start:endpoint]
@app.get("/notifications")
def list_notifications() -> dict:
    after = request.args.get("after", 0, type=int)
    return {"notifications": notifications_after(after)}


# --8<-- [end:endpoint]
