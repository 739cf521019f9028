"""The stream service's half: verify the API's token, enforce its channels, close at
expiry.

Run it with `uvicorn service:app --port 8001` beside the API (same SIDESTREAM_TOKEN_KEY
and REDIS_URL).
"""

# --8<-- [start:imports]
import os

from sidestream.service import create_app
from sidestream.tokens import StreamTokens, authorizer

# --8<-- [end:imports]

# --8<-- [start:app]
app = create_app(
    # 401 for a missing, malformed, expired, badly signed or foreign token; 403 for a
    # channel the token does not grant. The token's `exp` closes the stream.
    authorize=authorizer(StreamTokens.from_env()),
    # The API's origin: its pages open the streams.
    cors_origins=[os.environ.get("API_ORIGIN", "http://127.0.0.1:5000")],
)
# --8<-- [end:app]
