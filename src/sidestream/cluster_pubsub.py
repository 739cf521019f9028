"""Sharded pub/sub on Redis Cluster: one connection per master, whatever the number of channels.

On a cluster the bus announces events with `SPUBLISH`, which reaches only the master that owns
the channel's slot (and its replicas). [`ShardedPubSub`][sidestream.cluster_pubsub.ShardedPubSub]
is what the hub's listener ([`PubSubListener`][sidestream.listener.PubSubListener]) subscribes
with there: it holds **one pub/sub connection per master** that owns a subscribed channel
(opened when the first such channel is subscribed), sends `SSUBSCRIBE` there (one command per
slot, as Redis requires), and merges what the connections receive into one stream of messages
shaped like a one-node `PubSub`'s (`subscribe`, `message`, `pong`), so the listener's session
logic (confirmations, replay, ping) is the same on one node and on a cluster.
[`open_pubsub`][sidestream.cluster_pubsub.open_pubsub] picks it for a cluster client and
redis-py's own `PubSub` for one node.

**When channels move.** A channel lives where its slot lives. When a slot migrates
(`CLUSTER SETSLOT`, `redis-cli --cluster reshard`) or a replica is promoted, the old master
pushes `sunsubscribe` for the channels it no longer serves, a `SSUBSCRIBE` sent to a node that
lost the slot is answered with `-MOVED`, and a killed master's connection drops. Each of these
ends the whole session with [`ChannelMoved`][sidestream.cluster_pubsub.ChannelMoved] (a
`ConnectionError`): the listener then opens a new session, which re-reads the slot map, subscribes
every channel on its current owner, and replays each channel from its stream after the last id
it delivered. Nothing is lost or doubled, at the price of one replay read per channel. A shard
connection that redis-py reconnects by itself ends the session the same way (messages may have
been missed while it was down).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio.cluster
from redis.asyncio.client import PubSub
from redis.crc import key_slot
from redis.exceptions import RedisClusterException

from sidestream.cluster import is_cluster

__all__ = ["ChannelMoved", "ShardedPubSub", "open_pubsub"]

log = logging.getLogger("sidestream.cluster")

Message = dict[str, Any]
Callback = Callable[[Any], Awaitable[None]]


class ChannelMoved(redis.ConnectionError):
    """A subscribed channel's slot moved, or a shard's connection dropped: the session must be
    opened again on the cluster's current slot map (and its channels replayed)."""


def open_pubsub(client: Any) -> Any:
    """The pub/sub object a listener uses: sharded on a cluster client, else `pubsub()`."""
    if is_cluster(client):
        return ShardedPubSub(client)
    return client.pubsub()


class _Callbacks:
    """Connect callbacks registered on the session, run when any shard reconnects by itself."""

    def __init__(self) -> None:
        self.callbacks: list[Callback] = []

    def register_connect_callback(self, callback: Callback) -> None:
        self.callbacks.append(callback)

    def deregister_connect_callback(self, callback: Callback) -> None:
        with contextlib.suppress(ValueError):
            self.callbacks.remove(callback)


class _Dedicated:
    """A 'pool' of dedicated connections to one node: all that redis-py's PubSub asks of one.
    The connection is never shared with commands and is closed when the PubSub is."""

    def __init__(self, node: redis.asyncio.cluster.ClusterNode) -> None:
        self._node = node
        self.connection_kwargs = dict(node.connection_kwargs)

    def get_encoder(self) -> Any:
        return self._node.get_encoder()

    def get_protocol(self) -> Any:
        return self.connection_kwargs.get("protocol")

    async def get_connection(self, *args: Any, **options: Any) -> Any:
        connection: Any = self._node.connection_class(**self.connection_kwargs)
        await connection.connect()
        return connection

    async def release(self, connection: Any) -> None:
        await connection.disconnect()


class _Shard:
    """One master's pub/sub connection and the task that reads it."""

    def __init__(self, name: str, pubsub: Any) -> None:
        self.name = name
        self.pubsub = pubsub
        self.reader: asyncio.Task[None] | None = None
        self.channels: set[str] = set()
        self.leaving: dict[str, int] = {}  # channel -> SUNSUBSCRIBEs we sent, not yet confirmed


class ShardedPubSub:
    """`SSUBSCRIBE` over one connection per cluster master, read as one pub/sub session.

    It has the methods of redis-py's asyncio `PubSub` that the listener uses: `connect`,
    `subscribe` / `unsubscribe` (sent as `SSUBSCRIBE` / `SUNSUBSCRIBE` to each channel's
    master), `get_message` (`smessage` and `ssubscribe` come back as `message` and
    `subscribe`), `ping` (answered once every shard has answered), `channels`, `connection`
    (for connect callbacks) and `aclose`.

    Args:
        cluster: An asyncio cluster client (from
            [`connect_async`][sidestream.bus.connect_async] with a `redis+cluster://` URL).
    """

    def __init__(self, cluster: redis.asyncio.cluster.RedisCluster) -> None:
        self.cluster = cluster
        self.connection: _Callbacks | None = None
        self._shards: dict[str, _Shard] = {}
        self._where: dict[str, str] = {}  # channel -> name of the shard it is subscribed on
        self._queue: asyncio.Queue[Message | BaseException] = asyncio.Queue()
        self._pongs_due = 0
        self._lock = asyncio.Lock()
        self._closed = False

    # -- what the listener calls ---------------------------------------------------------------

    async def connect(self) -> None:
        """Read the cluster's current slot map (a new session after a move starts from it)."""
        try:
            await self.cluster.initialize()
            await self.cluster.nodes_manager.initialize()
        except RedisClusterException as exc:  # e.g. slots not covered while a failover runs
            raise ChannelMoved(f"the cluster's slot map is not usable yet: {exc}") from exc
        self.connection = _Callbacks()

    @property
    def channels(self) -> dict[str, None]:
        """The channels subscribed (on whichever shard)."""
        return dict.fromkeys(self._where)

    @property
    def shards(self) -> dict[str, int]:
        """Shard connections open: node name (`host:port`) -> channels subscribed there."""
        return {name: len(shard.channels) for name, shard in self._shards.items()}

    async def subscribe(self, *channels: str) -> None:
        """`SSUBSCRIBE` each channel on the master of its slot, one command per slot."""
        by_slot: dict[int, list[str]] = {}
        for channel in channels:
            name = channel.decode() if isinstance(channel, bytes) else channel
            by_slot.setdefault(key_slot(name.encode()), []).append(name)
        for slot, names in by_slot.items():
            node = self.cluster.nodes_manager.get_node_from_slot(slot)
            shard = await self._shard(node)
            for name in names:
                shard.channels.add(name)
                self._where[name] = shard.name
            await shard.pubsub.ssubscribe(*names)

    async def unsubscribe(self, *channels: str) -> None:
        """`SUNSUBSCRIBE` the channels (all of them when none are named)."""
        names = [c.decode() if isinstance(c, bytes) else c for c in channels] or list(self._where)
        for name in names:
            shard = self._shards.get(self._where.pop(name, ""))
            if shard is None:
                continue
            shard.channels.discard(name)
            shard.leaving[name] = shard.leaving.get(name, 0) + 1
            await shard.pubsub.sunsubscribe(name)

    async def ping(self) -> None:
        """PING every shard; one `pong` message comes back when all of them have answered."""
        self._pongs_due = len(self._shards)
        if not self._shards:
            self._queue.put_nowait({"type": "pong", "pattern": None, "channel": None, "data": b""})
        for shard in list(self._shards.values()):
            await shard.pubsub.ping()

    async def get_message(self, timeout: float | None = 0.0) -> Message | None:
        """The next message from any shard, or None after `timeout` seconds.

        Raises:
            ChannelMoved: a channel's slot moved, or a shard reconnected or failed.
            redis.RedisError: a shard's error reply (like `-MOVED` to an `SSUBSCRIBE`).
        """
        try:
            item = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    async def aclose(self) -> None:
        """Stop the readers and close every shard connection."""
        self._closed = True
        shards, self._shards = list(self._shards.values()), {}
        self._where = {}
        for shard in shards:
            if shard.reader is not None:
                shard.reader.cancel()
        for shard in shards:
            if shard.reader is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await shard.reader
            with contextlib.suppress(Exception):
                await shard.pubsub.aclose()

    # -- shards ---------------------------------------------------------------------------------

    async def _shard(self, node: redis.asyncio.cluster.ClusterNode) -> _Shard:
        async with self._lock:
            shard = self._shards.get(node.name)
            if shard is not None:
                return shard
            if self._closed:
                raise ChannelMoved("this sharded pub/sub session is closed")
            pool: Any = _Dedicated(node)
            pubsub: Any = PubSub(connection_pool=pool, encoder=self.cluster.encoder)
            await pubsub.connect()
            assert pubsub.connection is not None
            shard = _Shard(node.name, pubsub)
            pubsub.connection.register_connect_callback(self._reconnected)
            shard.reader = asyncio.create_task(
                self._read(shard), name=f"sidestream-shard-{node.name}"
            )
            self._shards[node.name] = shard
            log.info("sharded pub/sub connection open to %s", node.name)
            return shard

    async def _reconnected(self, connection: Any) -> None:
        """redis-py reconnected a shard by itself: what it missed meanwhile is unknown."""
        self._fail(ChannelMoved("a shard's pub/sub connection was reconnected"))
        if self.connection is not None:
            for callback in list(self.connection.callbacks):
                await callback(connection)

    def _fail(self, error: BaseException) -> None:
        if not self._closed:
            self._queue.put_nowait(error)

    async def _read(self, shard: _Shard) -> None:
        try:
            while True:
                message = await shard.pubsub.get_message(timeout=None)
                if message is not None:
                    self._translate(shard, message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(exc)

    def _translate(self, shard: _Shard, message: Message) -> None:
        kind = message["type"]
        channel = message.get("channel")
        name = channel.decode() if isinstance(channel, bytes) else channel
        if kind == "smessage":
            self._queue.put_nowait({**message, "type": "message"})
        elif kind == "ssubscribe":
            self._queue.put_nowait({**message, "type": "subscribe"})
        elif kind == "sunsubscribe":
            assert name is not None
            due = shard.leaving.get(name, 0)
            if due:  # the answer to our own SUNSUBSCRIBE
                if due == 1:
                    del shard.leaving[name]
                else:
                    shard.leaving[name] = due - 1
                return
            # Pushed by the server: the slot is not this master's any more.
            self._fail(ChannelMoved(f"{name} moved off {shard.name} (slot migrated or failover)"))
        elif kind == "pong":
            self._pongs_due -= 1
            if self._pongs_due == 0:
                self._queue.put_nowait({**message, "type": "pong"})
