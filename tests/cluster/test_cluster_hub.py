"""The hub on a real Redis Cluster: one pub/sub connection per shard, and channels that move.

Counts are exact: every test compares what each subscriber received, id by id, with what the
publisher was acknowledged (and, after a failover, with what the new master's stream holds).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

from sidestream.bus import AsyncBus, Bus, connect, connect_async
from sidestream.cluster_testing import LocalCluster, slot_of
from sidestream.hub import Hub
from sidestream.sse import EventStreamParser

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@dataclass
class Reader:
    """Reads one subscriber to its end, keeping every event's id and every reset."""

    sub: Any  # sidestream's Subscriber (the hub's split moves it between modules)
    ids: list[str] = field(default_factory=list)
    resets: list[str] = field(default_factory=list)

    async def run(self) -> None:
        parser = EventStreamParser()
        chunk = self.sub.preamble
        while True:
            for event in parser.feed(chunk):
                if event.event == "reset":
                    self.resets.append(event.data)
                elif event.id is not None and event.data:
                    self.ids.append(event.id)
            chunk = await self.sub.next_chunk()
            if not chunk:
                return


@dataclass
class Publisher:
    """Publishes to `channels` round-robin from a thread until stopped; keeps what was acked."""

    bus: Bus
    channels: Sequence[str]
    acked: dict[str, list[str]] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)  # attempts without an answer
    stop: threading.Event = field(default_factory=threading.Event)
    sent: int = 0

    def run(self, limit: int) -> None:
        i = 0
        while not self.stop.is_set() and i < limit:
            name = self.channels[i % len(self.channels)]
            try:
                self.acked.setdefault(name, []).append(self.bus.publish(name, f"{name}#{i}"))
            except (redis.RedisError, redis.exceptions.RedisClusterException):
                self.failed[name] = self.failed.get(name, 0) + 1
                time.sleep(0.05)
            i += 1
            self.sent = i
            time.sleep(0.002)


@pytest.fixture
async def hub_on(cluster: LocalCluster, prefix: str) -> AsyncIterator[Hub]:
    client = connect_async(cluster.url)
    hub = Hub(AsyncBus(client, prefix=prefix), heartbeat=60, reconnect_delay=(0.05, 0.5))
    async with hub:
        yield hub
    await client.aclose()


def sharded_connections(cluster: LocalCluster) -> dict[int, int]:
    """Per master: client connections holding at least one shard channel (CLIENT LIST)."""
    counts: dict[int, int] = {}
    for port in cluster.masters():
        client = cluster.node(port).client()
        try:
            clients = client.client_list()
        finally:
            client.close()
        counts[port] = sum(1 for c in clients if int(c.get("ssub", 0)) > 0)
    return counts


async def until(check: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_300_streams_on_three_shards_hold_one_pubsub_connection_per_shard(
    cluster: LocalCluster, hub_on: Hub, prefix: str
) -> None:
    masters = cluster.masters()
    assert len(masters) == 3
    channels = [name for port in masters for name in cluster.channels_on(port, 100, "fan")]
    assert len({slot_of("{" + name + "}") for name in channels}) > 250  # spread over slots
    subs = [await hub_on.subscribe([name]) for name in channels]
    readers = [Reader(sub) for sub in subs]
    tasks = [asyncio.create_task(r.run()) for r in readers]
    assert hub_on.open_streams == 300
    # One pub/sub connection per shard: not per channel (300), not per client, not one in all.
    assert sharded_connections(cluster) == {port: 1 for port in masters}
    bus = Bus(connect(cluster.url), prefix=prefix)
    try:
        acked = {name: bus.publish(name, f"to {name}") for name in channels}
    finally:
        bus.redis.close()
    await until(lambda: all(len(r.ids) >= 1 for r in readers))
    await asyncio.sleep(0.2)  # a second (doubled) delivery would show up here
    for name, reader in zip(channels, readers, strict=True):
        assert reader.ids == [acked[name]]
        assert reader.resets == []
    for sub in subs:
        hub_on.finish(sub)
        sub.close()
    await asyncio.gather(*tasks)
    await until(lambda: sharded_connections(cluster) == {port: 0 for port in masters})


async def test_a_slot_migrated_while_streams_are_open_loses_and_doubles_nothing(
    cluster: LocalCluster, hub_on: Hub, prefix: str
) -> None:
    source, target, other = cluster.masters()
    moving = cluster.channels_on(source, 2, "mig")
    staying = cluster.channels_on(source, 3, "mig")[2:] + cluster.channels_on(other, 1, "mig")
    channels = moving + staying
    subs = [await hub_on.subscribe([name]) for name in channels for _ in range(2)]
    readers = [Reader(sub) for sub in subs]
    tasks = [asyncio.create_task(r.run()) for r in readers]
    publisher = Publisher(Bus(connect(cluster.url), prefix=prefix), channels)
    thread = threading.Thread(target=publisher.run, args=(100_000,))
    thread.start()
    try:
        await until(lambda: publisher.sent > 200)
        for name in moving:
            moved = await asyncio.to_thread(cluster.migrate_slot, slot_of("{" + name + "}"), target)
            assert moved == 1  # the channel's stream went with its slot
            await until(lambda p=publisher.sent: publisher.sent > p + 100)
    finally:
        publisher.stop.set()
        await asyncio.to_thread(thread.join)
        publisher.bus.redis.close()
    owners = cluster.slot_owners()
    assert [owners[slot_of("{" + n + "}")] for n in moving] == [target, target]
    assert publisher.failed == {}
    for name in channels:
        assert len(publisher.acked[name]) > 100

    def caught_up() -> bool:
        return all(r.ids[-1:] == publisher.acked[r.sub.channels[0]][-1:] for r in readers)

    await until(caught_up)
    await asyncio.sleep(0.2)
    for reader in readers:
        assert reader.ids == publisher.acked[reader.sub.channels[0]]  # in order, once each
        assert reader.resets == []
    assert hub_on.reconnects >= 1  # the move was noticed (the old master's SUNSUBSCRIBE)
    assert sharded_connections(cluster) == {source: 1, target: 1, other: 1}
    for sub in subs:
        hub_on.finish(sub)
        sub.close()
    await asyncio.gather(*tasks)


async def test_a_channel_subscribed_after_its_slot_moved_follows_the_moved_reply(
    cluster: LocalCluster, hub_on: Hub, prefix: str
) -> None:
    # The hub's slot map is from before the move, and no subscription told it (the channel had
    # no readers yet): its SSUBSCRIBE goes to the old master, which answers -MOVED.
    source, target, other = cluster.masters()
    [elsewhere] = cluster.channels_on(other, 1, "stale")
    [moved] = [n for n in cluster.channels_on(source, 8, "stale") if n != elsewhere][-1:]
    first = Reader(await hub_on.subscribe([elsewhere]))
    first_task = asyncio.create_task(first.run())
    await asyncio.to_thread(cluster.migrate_slot, slot_of("{" + moved + "}"), target)
    reconnects = hub_on.reconnects
    late = Reader(await hub_on.subscribe([moved]))
    late_task = asyncio.create_task(late.run())
    assert hub_on.reconnects > reconnects  # the -MOVED ended the session; the next one is right
    bus = Bus(connect(cluster.url), prefix=prefix)
    try:
        sent = [bus.publish(moved, "to the new owner"), bus.publish(elsewhere, "elsewhere")]
    finally:
        bus.redis.close()
    await until(lambda: late.ids == sent[:1] and first.ids == sent[1:])
    for reader in (first, late):
        hub_on.finish(reader.sub)
        reader.sub.close()
    await asyncio.gather(first_task, late_task)
