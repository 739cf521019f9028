"""Quickstart, the stream service: it holds the browsers' EventSource connections.

uvicorn service:app --port 8001    # REDIS_URL and SIDESTREAM_TOKEN_KEY: the API's
"""

import os

from sidestream.bus import AsyncBus, connect_async
from sidestream.service import create_app
from sidestream.tokens import StreamTokens, authorizer

prefix = os.environ.get("SIDESTREAM_KEY_PREFIX", "sidestream:")  # the API's prefix
app = create_app(
    AsyncBus(connect_async(), prefix=prefix),  # REDIS_URL from the environment
    # Only the API's tokens open a stream: 401 without a valid one, 403 for a channel
    # the token does not name. The stream ends when the token expires.
    authorize=authorizer(StreamTokens.from_env()),  # SIDESTREAM_TOKEN_KEY
    # The page comes from the API: its origin may open streams here.
    cors_origins=[os.environ.get("API_ORIGIN", "http://127.0.0.1:5000")],
)
