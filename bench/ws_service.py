"""The stream service as bench/ws_rtt.py runs it: `create_app` with a grant to publish anywhere.

Run by the bench as `uvicorn ws_service:app --app-dir bench ...` in its own process.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from sidestream.access import Grant
from sidestream.bus import AsyncBus, connect_async
from sidestream.service import create_app


async def everyone_publishes(request: Any, channels: Sequence[str]) -> Grant:
    return Grant(subject="bench", publish=("*",))


bus = AsyncBus(connect_async(os.environ["REDIS_URL"]), prefix=os.environ["BENCH_PREFIX"])
app = create_app(bus, authorize=everyone_publishes, max_streams=20_000)
