"""The stream service as tests/cluster runs it under uvicorn: create_app on REDIS_URL (a cluster
URL there), on the test's own key prefix, public reads (the test's channels only)."""

from __future__ import annotations

import os

from sidestream.access import allow_everyone
from sidestream.bus import AsyncBus, connect_async
from sidestream.service import create_app

bus = AsyncBus(connect_async(), prefix=os.environ["TEST_PREFIX"])
app = create_app(bus, authorize=allow_everyone)
