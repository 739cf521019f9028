"""The bus on a real Redis Cluster: publish, history and wait for channels on every shard."""

from __future__ import annotations

import asyncio
import threading

import pytest
import redis

from sidestream.bus import AsyncBus, Bus, connect, connect_async
from sidestream.cluster import is_cluster, parse_cluster_url
from sidestream.cluster_testing import LocalCluster, slot_of
from sidestream.errors import HistoryGap, InvalidConfig

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def test_cluster_url_parses_startup_nodes_and_keeps_options() -> None:
    first, others = parse_cluster_url("redis+cluster://u:p@a:7000,b:7001/?max_connections=9")
    assert first == "redis://u:p@a:7000/?max_connections=9"
    assert others == [("b", 7001)]
    assert parse_cluster_url("rediss+cluster://a:7000")[0] == "rediss://a:7000/"


@pytest.mark.parametrize(
    "url", ["redis+cluster://a", "redis+cluster://a:7000/3", "redis://a:7000", "redis+cluster://"]
)
def test_bad_cluster_urls_name_the_form(url: str) -> None:
    with pytest.raises(InvalidConfig, match=r"redis\+cluster://"):
        parse_cluster_url(url)


def test_a_plain_redis_url_stays_one_node(redis_url: str) -> None:
    client = connect(redis_url)
    try:
        assert not is_cluster(client)
        assert not Bus(client).sharded
    finally:
        client.close()


def test_stream_and_live_channel_share_a_slot_on_every_master(
    cluster: LocalCluster, prefix: str
) -> None:
    bus = Bus(connect(cluster.url), prefix=prefix)
    node = cluster.node(cluster.masters()[0]).client()
    try:
        for port in cluster.masters():
            for name in cluster.channels_on(port, 3):
                stream, live = bus.stream_key(name), bus.live_channel(name)
                assert node.cluster("KEYSLOT", stream) == node.cluster("KEYSLOT", live)
                assert node.cluster("KEYSLOT", stream) == slot_of(stream)
                assert cluster.slot_owners()[slot_of(stream)] == port
    finally:
        node.close()
        bus.redis.close()


def test_publish_history_and_wait_on_every_shard(cluster: LocalCluster, prefix: str) -> None:
    client = connect(cluster.url)
    bus = Bus(client, prefix=prefix)
    assert bus.sharded and is_cluster(client)
    # The client's 35 s socket timeout reaches the cluster's nodes: one XREAD BLOCK per wait.
    assert bus._max_block is not None and bus._max_block > 25
    try:
        for port in cluster.masters():
            name = cluster.channels_on(port, 1, prefix="bus")[0]
            ids = [bus.publish(name, f'{{"n": {i}}}', event="tick") for i in range(5)]
            assert [e.id for e in bus.history(name)] == ids
            assert [e.data for e in bus.history(name, after_id=ids[1])] == [
                f'{{"n": {i}}}' for i in range(2, 5)
            ]
            assert bus.latest_id(name) == ids[-1]
            # The stream lives on the slot's master, and only there.
            for other in cluster.masters():
                owner = cluster.node(other).client()
                try:
                    held = owner.cluster("COUNTKEYSINSLOT", slot_of(bus.stream_key(name)))
                    assert (int(held) > 0) == (other == port)
                finally:
                    owner.close()
            assert bus.wait(name, after_id=ids[-1], timeout=0.05) == []
            timer = threading.Timer(0.2, lambda n=name: bus.publish(n, "late"))
            timer.start()
            try:
                got = bus.wait(name, after_id=ids[-1], timeout=20)
            finally:
                timer.join()
            assert [e.data for e in got] == ["late"]
    finally:
        client.close()


def test_history_gap_is_reported_on_a_cluster(cluster: LocalCluster, prefix: str) -> None:
    bus = Bus(connect(cluster.url), prefix=prefix, maxlen=1)
    try:
        name = cluster.channels_on(cluster.masters()[1], 1, prefix="gap")[0]
        first = bus.publish(name, "a")
        for i in range(300):  # MAXLEN ~ trims whole blocks: publish well past one
            bus.publish(name, str(i))
        with pytest.raises(HistoryGap):
            bus.history(name, after_id=first)
    finally:
        bus.redis.close()


def test_live_messages_go_out_sharded_to_the_slots_master(
    cluster: LocalCluster, prefix: str
) -> None:
    bus = Bus(connect(cluster.url), prefix=prefix)
    try:
        for port in cluster.masters():
            name = cluster.channels_on(port, 1, prefix="live")[0]
            listener = cluster.node(port).client()
            sharded, plain = listener.pubsub(), listener.pubsub()
            try:
                sharded.ssubscribe(bus.live_channel(name))
                plain.subscribe(bus.live_channel(name))
                assert sharded.get_message(timeout=5)["type"] == "ssubscribe"
                assert plain.get_message(timeout=5)["type"] == "subscribe"
                event_id = bus.publish(name, "hello")
                assert bus.publish_live(name, "now") == 1
                got = [sharded.get_message(timeout=5) for _ in range(2)]
                assert [m["data"] for m in got] == [
                    f"{event_id}\n\nhello".encode(),
                    b"\n\nnow",
                ]
                assert plain.get_message(timeout=0.2) is None  # SPUBLISH, not PUBLISH
            finally:
                sharded.close()
                plain.close()
                listener.close()
    finally:
        bus.redis.close()


def test_async_bus_on_every_shard(cluster: LocalCluster, prefix: str) -> None:
    async def main() -> None:
        client = connect_async(cluster.url)
        bus = AsyncBus(client, prefix=prefix)
        assert bus.sharded
        try:
            for port in cluster.masters():
                name = cluster.channels_on(port, 1, prefix="async")[0]
                ids = [await bus.publish(name, str(i)) for i in range(3)]
                assert [e.id for e in await bus.history(name, after_id=ids[0])] == ids[1:]
                waiter = asyncio.create_task(bus.wait(name, after_id=ids[-1], timeout=20))
                await asyncio.sleep(0.1)
                later = await bus.publish(name, "later")
                assert [e.id for e in await waiter] == [later]
        finally:
            await client.aclose()

    asyncio.run(main())


def test_a_cluster_with_no_node_answering_is_a_connection_error() -> None:
    from sidestream.testing import free_port

    with pytest.raises(redis.ConnectionError, match="cannot reach the Redis Cluster"):
        connect(f"redis+cluster://127.0.0.1:{free_port()}")


def test_long_poll_waits_on_every_shard(cluster: LocalCluster, prefix: str) -> None:
    from sidestream.longpoll import long_poll

    bus = Bus(connect(cluster.url), prefix=prefix)
    try:
        for port in cluster.masters():
            name = cluster.channels_on(port, 1, prefix="poll")[0]
            first = long_poll(bus, name, None)
            assert first.status == 200 and first.body["events"] == []
            timer = threading.Timer(0.3, lambda n=name: bus.publish(n, "news"))
            timer.start()
            try:
                reply = long_poll(bus, name, first.body["last_id"], "20")
            finally:
                timer.join()
            assert reply.status == 200
            assert [e["data"] for e in reply.body["events"]] == ["news"]
            assert reply.body["last_id"] == bus.latest_id(name)
    finally:
        bus.redis.close()
