"""Testing the stream service in-process with Falcon's ASGIConductor (no server, no
sockets).

One fakeredis `FakeServer` is shared by a sync client (what the Flask API publishes
with) and an async one (what the service reads with): the two sides talk as they would
through Redis.
"""

# --8<-- [start:imports]
import asyncio
from collections.abc import AsyncIterator

import fakeredis
import falcon.testing
import pytest
import pytest_asyncio
from app import create_app as create_api

from sidestream.access import allow_everyone
from sidestream.bus import AsyncBus, Bus
from sidestream.hub import Hub
from sidestream.service import StreamApp, create_app
from sidestream.testing import read_events_async

# --8<-- [end:imports]

pytestmark = pytest.mark.asyncio  # every test here is async (pytest-asyncio)


# --8<-- [start:fixtures]
@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()  # a fresh, empty Redis for each test


@pytest.fixture
def bus(server: fakeredis.FakeServer) -> Bus:
    return Bus(fakeredis.FakeRedis(server=server))  # the API's side


@pytest.fixture
def service(server: fakeredis.FakeServer) -> StreamApp:
    hub = Hub(AsyncBus(fakeredis.FakeAsyncRedis(server=server)), heartbeat=0.1)
    # heartbeats every 0.1 s, for the test; the test's channels are public
    return create_app(hub=hub, authorize=allow_everyone, drain_on_signal=False)


@pytest_asyncio.fixture
async def conductor(service: StreamApp) -> AsyncIterator[falcon.testing.ASGIConductor]:
    # The conductor runs the app's startup and shutdown:
    async with falcon.testing.ASGIConductor(service) as conductor:
        yield conductor


# --8<-- [end:fixtures]


# --8<-- [start:stream]
async def test_what_the_api_publishes_arrives_on_the_stream(
    conductor: falcon.testing.ASGIConductor, bus: Bus
) -> None:
    api = create_api(bus).test_client()
    # An event stream never ends: read what you need inside the block, leaving it
    # disconnects.
    async with conductor.simulate_get_stream("/events?channel=orders") as result:
        assert result.headers["content-type"] == "text/event-stream"
        reply = api.post("/channels/orders/events", json={"text": "paid"})
        [event] = await read_events_async(result.stream.read, count=1, timeout=5)
    assert (event.id, event.data) == (reply.json["id"], "paid")


async def test_an_idle_stream_gets_heartbeats(
    conductor: falcon.testing.ASGIConductor,
) -> None:
    async with (
        asyncio.timeout(5),  # fail, rather than hang, if they never come
        conductor.simulate_get_stream("/events?channel=quiet") as result,
    ):
        received = b""
        # Comments: EventSource dispatches nothing
        while received.count(b": ping\n\n") < 2:
            received += await result.stream.read()


async def test_a_disconnect_frees_the_subscription(
    conductor: falcon.testing.ASGIConductor, service: StreamApp, bus: Bus
) -> None:
    # As Redis counts them: one per service process, not per client
    def subscribers() -> int:
        return bus.redis.pubsub_numsub(bus.live_channel("orders"))[0][1]

    async with conductor.simulate_get_stream("/events?channel=orders"):
        assert (service.hub.stats().open_streams, subscribers()) == (1, 1)
    assert service.hub.stats().open_streams == 0
    async with asyncio.timeout(5):  # the hub unsubscribes once its last client has left
        while subscribers() != 0:
            await asyncio.sleep(0.01)


async def test_a_bad_request_gets_a_400_and_no_stream(
    conductor: falcon.testing.ASGIConductor,
) -> None:
    # No channel: answered, not streamed
    result = await conductor.simulate_get("/events")
    assert result.status_code == 400
    assert result.json["title"] == "Missing parameter"


# --8<-- [end:stream]
