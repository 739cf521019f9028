"""The stream service as bench/fanout.py runs it: `create_app` on the bench's key prefix.

Run by the bench as `uvicorn fanout_service:app --app-dir bench ...` in its own process.
"""

from __future__ import annotations

import os

from sidestream.access import allow_everyone
from sidestream.bus import AsyncBus, connect_async
from sidestream.service import create_app

bus = AsyncBus(connect_async(os.environ["REDIS_URL"]), prefix=os.environ["BENCH_PREFIX"])
app = create_app(bus, authorize=allow_everyone, max_streams=20_000)  # the bench's own channels
