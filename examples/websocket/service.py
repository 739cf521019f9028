"""The chat's WebSocket side: the stream service, with its /ws route, checking the API's
tokens.

Run it beside the API (same SIDESTREAM_TOKEN_KEY and REDIS_URL), as many processes as
you like: `uvicorn service:app --port 8002 --ws-max-size 4096`. Sockets on different
processes reach each other through Redis.
"""

# --8<-- [start:imports]
import json
import os

from sidestream.access import Grant
from sidestream.service import create_app
from sidestream.tokens import StreamTokens, authorizer
from sidestream.websocket import Message

# --8<-- [end:imports]


# --8<-- [start:stamp]
async def stamp_sender(grant: Grant, message: Message) -> Message:
    """A client may claim to be anyone; the token says who it is, so the service writes
    that."""
    text = json.dumps({"from": grant.subject, "text": message.data})
    return Message(message.channel, text, event="message", ref=message.ref)


# --8<-- [end:stamp]


# --8<-- [start:app]
app = create_app(
    # The token's mercure.subscribe is what a socket may join, mercure.publish where it
    # may write.
    authorize=authorizer(StreamTokens.from_env()),
    # Browsers open a WebSocket to any site: only pages from the API's origin may.
    cors_origins=[os.environ.get("API_ORIGIN", "http://127.0.0.1:5000")],
    on_publish=stamp_sender,
    # A chat line, not a file: a larger message closes the socket with 1009.
    max_message_bytes=4096,
)
# --8<-- [end:app]
