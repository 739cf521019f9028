"""The stream service with its Mercure route, as bench/mercure_fanout.py runs it.

Run by the bench as `uvicorn mercure_service:app --app-dir bench ...` in its own process(es):
`/events` and `/.well-known/mercure` on one app, one hub, the bench's key prefix.
"""

from __future__ import annotations

import os

from sidestream.access import allow_everyone
from sidestream.bus import AsyncBus, connect_async
from sidestream.mercure_hub import MercureSettings, install
from sidestream.service import create_app
from sidestream.tokens import AccessTokenClaims, StreamTokens

HUB_URL = "https://hub.example.com/.well-known/mercure"
ISSUER = "https://bench.example.com"

bus = AsyncBus(connect_async(os.environ["REDIS_URL"]), prefix=os.environ["BENCH_PREFIX"])
app = create_app(bus, authorize=allow_everyone, max_streams=20_000)  # the bench's own channels
publishers = StreamTokens(
    os.environ["BENCH_MERCURE_KEY"],
    audience=HUB_URL,
    issuer=ISSUER,
    claims_format=AccessTokenClaims(client_id=ISSUER),
)
install(
    app,
    app.hub,
    MercureSettings(
        hub_url=HUB_URL, publisher_tokens=publishers, anonymous=True, max_streams=20_000
    ),
)
