"""What the Flask API and the stream service must agree on, read from one place by both.

The API calls `api_bus()` to publish; the service calls
`create_app(service_bus(), authorize=...)`. Give both processes the same environment
(one EnvironmentFile, one Kubernetes Secret).
"""

# --8<-- [start:settings]
import os

from sidestream.bus import AsyncBus, Bus, connect, connect_async

# The same server *and database* (the /0 of redis://host:6379/0) ...
REDIS_URL = os.environ["REDIS_URL"]
# ... and the same key prefix: it names the streams and the pub/sub channels.
PREFIX = os.environ.get("SIDESTREAM_PREFIX", "sidestream:")


def api_bus() -> Bus:
    """The Flask API's bus: it publishes."""
    return Bus(connect(REDIS_URL), prefix=PREFIX)


def service_bus() -> AsyncBus:
    """The stream service's bus: it reads."""
    return AsyncBus(connect_async(REDIS_URL), prefix=PREFIX)


# --8<-- [end:settings]
