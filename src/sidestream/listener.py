"""The hub's Redis pub/sub session: subscriptions, confirmations, ping, reconnect, restart.

A [`Hub`][sidestream.hub.Hub] decides *which* live channels it wants and what to do with what
arrives; a listener keeps the connection that brings it.
[`PubSubListener`][sidestream.listener.PubSubListener] is the one the hub uses, on one Redis node
or (through `sidestream.cluster_pubsub`) on a Redis Cluster. It talks to the hub only through a
[`ListenerHost`][sidestream.listener.ListenerHost]:

- on every new session it subscribes every channel the host
  [wants][sidestream.listener.ListenerHost.wanted];
- when Redis confirms the last `SUBSCRIBE` sent for a channel in this session, it tells the host
  ([`on_subscribed`][sidestream.listener.ListenerHost.on_subscribed]: read the start position, or
  replay after a reconnect);
- it hands every message to [`on_message`][sidestream.listener.ListenerHost.on_message], and
  awaits what that returns, if anything (a check against the Stream), before reading on;
- on one Redis node with hiredis installed it reads in bulk
  ([`sidestream.bulk_reader`][sidestream.bulk_reader]: every message of a socket read at once,
  no task wake-up per message); otherwise one message at a time through redis-py. The process
  logs once which way its hub reads;
- after a silence of `ping_interval` it sends `PING`; no answer in as long again ends the session;
- when a session ends for any reason (Redis gone, redis-py reconnecting by itself, or a bug), it
  tells the host ([`on_lost`][sidestream.listener.ListenerHost.on_lost]: messages may have been
  missed) and opens a new one after redis-py's own full-jitter backoff. The reader task is
  restarted if it ever ends while the hub runs.

A listener for another topology implements the same methods
([`Listener`][sidestream.listener.Listener]).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Any, Final, Protocol

from redis.backoff import FullJitterBackoff
from redis.exceptions import RedisError

from sidestream.bulk_reader import YIELD_EVERY, BulkReader, attach
from sidestream.cluster import is_cluster
from sidestream.cluster_pubsub import open_pubsub

__all__ = ["Listener", "ListenerHost", "PubSubListener"]

log = logging.getLogger("sidestream.hub")

# A live id more than this far ahead of Redis's clock is not taken on trust: the Stream decides.
_AHEAD_SLACK_MS: Final = 2000

_logged: set[str] = set()  # how the hub reads pub/sub: logged once per process each way


class ListenerHost(Protocol):
    """What a listener asks of the hub it serves."""

    def wanted(self) -> list[str]:
        """The live channels to subscribe on a new session."""
        ...

    def is_wanted(self, live: str) -> bool:
        """Whether `live` is still wanted (checked right before a SUBSCRIBE or UNSUBSCRIBE)."""
        ...

    def on_message(self, live: bytes | str, payload: bytes | str) -> Awaitable[None] | None:
        """A message arrived; may return something to await before the next one is read."""
        ...

    async def on_subscribed(self, live: str) -> None:
        """Redis confirmed the last SUBSCRIBE sent for `live` in this session."""
        ...

    def on_lost(self) -> None:
        """The session ended: messages may have been missed until the next one."""
        ...


class Listener(Protocol):
    """The interface a hub listens through (one node, or later a cluster's shards)."""

    reconnects: int
    restarts: int

    @property
    def connected(self) -> bool: ...

    @property
    def alive(self) -> bool: ...

    def start(self) -> None: ...

    async def aclose(self) -> None: ...

    async def subscribe(self, live: str) -> None: ...

    async def unsubscribe(self, live: str) -> None: ...

    def ahead_of_redis(self, key: tuple[int, int]) -> bool: ...


class _Session:
    """One pub/sub connection's life: from connect to the first error."""

    def __init__(self, pubsub: Any) -> None:
        self.pubsub = pubsub
        self.sent: dict[str, int] = {}
        self.confirmed: dict[str, int] = {}
        self.alive = True
        self.bulk: BulkReader | None = None  # set when the socket is read in bulk

    async def reconnected(self, connection: Any) -> None:
        """Any later (re)connect, even one redis-py makes by itself, means messages may have
        been missed: end the session so the reader starts a clean one and replays."""
        self.alive = False


class PubSubListener:
    """One pub/sub session at a time for a hub, opened again whenever it ends.

    Args:
        redis: The bus's asyncio client (one node or a cluster).
        host: The hub.
        ping_interval: Seconds of silence before a `PING`; no answer in as long again ends the
            session.
        reconnect_delay: `(first, cap)` of redis-py's `FullJitterBackoff` between sessions.

    Attributes:
        reconnects: Sessions that ended and were opened again.
        restarts: Times the reader failed on something other than the connection.
        session: The current session, if any (for tests that cut its connection).
    """

    def __init__(
        self,
        redis: Any,
        host: ListenerHost,
        *,
        ping_interval: float,
        reconnect_delay: tuple[float, float],
    ) -> None:
        first, cap = reconnect_delay
        self.redis = redis
        self.host = host
        self.ping_interval = ping_interval
        self.backoff = FullJitterBackoff(cap=cap, base=first)
        self.reconnects = 0
        self.restarts = 0
        self.session: _Session | None = None
        self._lock: asyncio.Lock | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clock: tuple[int, float] | None = None  # (Redis ms, loop time) at connect
        self._closing = False

    @property
    def connected(self) -> bool:
        """Whether a session is up right now."""
        return self.session is not None and self.session.alive

    @property
    def alive(self) -> bool:
        """Whether the reader task is running."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the reader (call from the event loop)."""
        self._loop = asyncio.get_running_loop()
        self._lock = asyncio.Lock()
        self._task = self._start_reader()

    def _start_reader(self) -> asyncio.Task[None]:
        task = asyncio.create_task(self._run(), name="sidestream-hub-reader")
        task.add_done_callback(self._reader_ended)
        return task

    def _reader_ended(self, task: asyncio.Task[None]) -> None:
        """A reader must never end while the hub runs: if it did anyway, start another."""
        if self._closing or task.cancelled() or task is not self._task:
            return
        log.error(
            "the hub's reader ended unexpectedly; starting it again", exc_info=task.exception()
        )
        self.restarts += 1
        self.host.on_lost()
        self._task = self._start_reader()

    async def aclose(self) -> None:
        """Stop reading and close the session."""
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        session, self.session = self.session, None
        if session is not None:
            if session.alive and session.pubsub.channels:
                # Closing drops the subscriptions on Redis anyway, but not on fakeredis.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(session.pubsub.unsubscribe(), 1.0)
            await self._close_session(session)

    async def subscribe(self, live: str) -> None:
        """SUBSCRIBE `live` on the current session, in call order (a new session subscribes
        every wanted channel by itself)."""
        await self._send("SUBSCRIBE", live)

    async def unsubscribe(self, live: str) -> None:
        """UNSUBSCRIBE `live`, unless it is wanted again by then."""
        await self._send("UNSUBSCRIBE", live)

    async def _send(self, command: str, live: str) -> None:
        assert self._lock is not None
        async with self._lock:
            session = self.session
            if session is None or not session.alive:
                return  # the next session subscribes to every wanted channel
            wanted = self.host.is_wanted(live)
            if command == "SUBSCRIBE":
                if not wanted:
                    return
                session.sent[live] = session.sent.get(live, 0) + 1
            elif wanted:
                return  # wanted again before we got to unsubscribe
            try:
                await self._command(session, command, live)
            except (RedisError, OSError) as exc:
                log.warning("%s %s failed: %s", command, live, exc)
                session.alive = False

    @staticmethod
    async def _command(session: _Session, command: str, *lives: str) -> None:
        if session.bulk is not None:
            session.bulk.send(command, *lives)
        elif command == "SUBSCRIBE":
            await session.pubsub.subscribe(*lives)
        else:
            await session.pubsub.unsubscribe(*lives)

    def ahead_of_redis(self, key: tuple[int, int]) -> bool:
        """True when `key` is further ahead of Redis's own clock (read with `TIME` at connect)
        than any XADD could make it."""
        clock, loop = self._clock, self._loop
        if clock is None or loop is None:
            return False
        now_ms = clock[0] + (loop.time() - clock[1]) * 1000
        return key[0] > now_ms + _AHEAD_SLACK_MS

    # -- the reader ----------------------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while not self._closing:
            session: _Session | None = None
            try:
                session = await self._open_session()
                attempt = 0
                await self._read(session)
            except (RedisError, OSError, TimeoutError) as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # redis-py may turn a cancellation into a TimeoutError: stop all the same.
                    raise asyncio.CancelledError from exc
                log.warning("Redis pub/sub connection lost: %s", exc)
            except Exception as exc:
                # A bug, or something no one foresaw: never let it stop delivery for good.
                log.error("the hub's reader failed; restarting it: %s", exc, exc_info=exc)
                self.restarts += 1
            finally:
                if session is not None:
                    session.alive = False
                    if self.session is session:
                        self.session = None
                    await self._close_session(session)
            if self._closing:
                return
            self.reconnects += 1
            self.host.on_lost()
            delay = self.backoff.compute(attempt)
            attempt += 1
            await asyncio.sleep(delay)

    async def _open_session(self) -> _Session:
        # One node: one PubSub. Redis Cluster: SSUBSCRIBE over one connection per master.
        pubsub: Any = open_pubsub(self.redis)
        session = _Session(pubsub)
        assert self._lock is not None
        try:
            await pubsub.connect()
            pubsub.connection.register_connect_callback(session.reconnected)
            await self._read_redis_clock()
            self._read_in_bulk(session)
            # Holding the lock: a channel added meanwhile is subscribed once this session is
            # in place, by its own SUBSCRIBE.
            async with self._lock:
                lives = self.host.wanted()
                for live in lives:
                    session.sent[live] = 1
                if lives:
                    await self._command(session, "SUBSCRIBE", *lives)
                self.session = session
        except BaseException:
            session.alive = False
            await self._close_session(session)
            raise
        return session

    def _read_in_bulk(self, session: _Session) -> None:
        """Take over the session's socket with a bulk reader, if this connection allows it."""
        if is_cluster(self.redis):
            why = "a Redis Cluster (one sharded connection per master)"
        else:
            session.bulk, why = attach(
                session.pubsub.connection, lambda reply: self._on_reply(session, reply)
            )
        way = "in bulk (hiredis)" if session.bulk is not None else f"through redis-py: {why}"
        if way not in _logged:
            _logged.add(way)
            log.info("the hub reads Redis pub/sub %s", way)

    async def _close_session(self, session: _Session) -> None:
        if session.bulk is not None:
            await session.bulk.settle()  # before the host hears the session was lost
        connection = session.pubsub.connection
        if connection is not None:
            connection.deregister_connect_callback(session.reconnected)
        with contextlib.suppress(Exception):
            await session.pubsub.aclose()

    async def _read_redis_clock(self) -> None:
        try:
            seconds, micros = await self.redis.time()
        except (RedisError, OSError, ValueError, TypeError):
            self._clock = None  # no clock: every live id is taken on trust
            return
        assert self._loop is not None
        self._clock = (int(seconds) * 1000 + int(micros) // 1000, self._loop.time())

    async def _read(self, session: _Session) -> None:
        if session.bulk is not None:
            await self._read_bulk(session, session.bulk)
        else:
            await self._read_each(session)

    def _on_reply(self, session: _Session, reply: Any) -> Awaitable[None] | None:
        """One reply read in bulk: a message, a confirmation, or a pong (ignored)."""
        if isinstance(reply, list) and len(reply) == 3:  # an array (RESP2) or a push (RESP3)
            kind = reply[0]
            if kind == b"message":
                return self.host.on_message(reply[1], reply[2])
            if kind == b"subscribe":
                return self._confirmed(session, reply[1])
        return None

    def _confirmed(self, session: _Session, raw: bytes | str) -> Awaitable[None] | None:
        """Redis confirmed a SUBSCRIBE: the host hears of the last one sent this session."""
        live = raw.decode() if isinstance(raw, bytes) else raw
        count = session.confirmed[live] = session.confirmed.get(live, 0) + 1
        if count >= session.sent.get(live, 1):
            return self.host.on_subscribed(live)
        return None

    async def _read_bulk(self, session: _Session, bulk: BulkReader) -> None:
        """Messages are handled as they arrive (by the bulk reader); this watches for the end
        of the connection and for silence (a PING, then no answer ends the session)."""
        assert self._loop is not None
        loop, interval = self._loop, self.ping_interval
        pinged_at = -1.0  # loop time of the last PING sent
        while session.alive and not self._closing:
            if bulk.ended.done():
                raise bulk.ended.result()
            unanswered = bulk.last_heard < pinged_at
            quiet_until = (pinged_at if unanswered else bulk.last_heard) + interval
            now = loop.time()
            if now < quiet_until:
                await asyncio.wait([bulk.ended], timeout=quiet_until - now)
                continue  # look again: an answer may have come meanwhile
            if bulk.busy:  # handling a reply (a replay, a check): not Redis's silence
                pinged_at = -1.0
                await asyncio.wait([bulk.ended], timeout=interval / 4)
                continue
            if unanswered:
                raise TimeoutError(f"no answer to PING in {interval:g}s")
            bulk.send("PING")
            pinged_at = loop.time()

    async def _read_each(self, session: _Session) -> None:
        assert self._loop is not None
        loop, host = self._loop, self.host
        pubsub = session.pubsub
        task = asyncio.current_task()
        last_heard = loop.time()
        pinged = False
        handled = 0
        while session.alive and not self._closing:
            message = await pubsub.get_message(timeout=self.ping_interval)
            if not session.alive:
                return
            now = loop.time()
            if message is None:
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError  # get_message swallowed it while waiting
                if now - last_heard >= self.ping_interval:
                    if pinged:
                        raise TimeoutError(f"no answer to PING in {self.ping_interval:g}s")
                    await pubsub.ping()
                    pinged = True
                continue
            last_heard, pinged = now, False
            kind = message["type"]
            if kind == "message":
                follow_up = host.on_message(message["channel"], message["data"])
                if follow_up is not None:
                    await follow_up
                handled += 1
                if handled % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
            elif kind == "subscribe":
                follow_up = self._confirmed(session, message["channel"])
                if follow_up is not None:
                    await follow_up
