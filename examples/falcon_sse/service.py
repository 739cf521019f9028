"""The separate SSE service that tutorials sketch, made real on sidestream's hub.

One process holds thousands of streams over ONE Redis subscription, checks each
browser's token before sending a byte, resumes reconnecting browsers by id, and drains
on shutdown. Run it with run.sh beside the Flask API; both read REDIS_URL and
STREAM_SECRET.
"""

# --8<-- [start:imports]
import hashlib
import hmac
import os
import time
from collections.abc import Sequence

import falcon.asgi

from sidestream.access import Grant
from sidestream.errors import Forbidden, Unauthorized
from sidestream.service import create_app

# --8<-- [end:imports]

SECRET = os.environ.get("STREAM_SECRET", "dev-only-secret").encode()


# --8<-- [start:token]
def sign(user: str, expires: int) -> str:
    """What the API gives the browser: `<user>.<expiry>.<signature>` (see the auth page
    for JWT)."""
    signature = hmac.new(
        SECRET, f"{user}.{expires}".encode(), hashlib.sha256
    ).hexdigest()
    return f"{user}.{expires}.{signature}"


def verify_token(token: str) -> tuple[str, int]:
    """The usual `verify_token` stub, made real: forged, altered or expired tokens are
    refused."""
    user, _, rest = token.partition(".")
    expires = rest.partition(".")[0]
    if not expires.isdigit() or not hmac.compare_digest(
        token.encode(), sign(user, int(expires)).encode()
    ):
        raise Unauthorized("invalid stream token")
    if int(expires) <= time.time():
        raise Unauthorized("stream token expired: get a new one from the API")
    return user, int(expires)


# --8<-- [end:token]


# --8<-- [start:authorize]
async def authorize(req: falcon.asgi.Request, channels: Sequence[str]) -> Grant:
    """EventSource cannot send headers, so the token comes in the query string."""
    user, expires = verify_token(req.get_param("token") or "")
    readable = {"announcements", f"user:{user}"}
    if refused := [channel for channel in channels if channel not in readable]:
        raise Forbidden(f"{user} may not read {', '.join(refused)}")
    # The stream closes when the token expires
    return Grant(subject=user, expires_at=expires)


# --8<-- [end:authorize]


# --8<-- [start:app]
app = create_app(
    authorize=authorize,
    cors_origins=[os.environ.get("API_ORIGIN", "http://127.0.0.1:5000")],
    heartbeat=float(os.environ.get("HEARTBEAT", "15")),
)
# --8<-- [end:app]
