"""Faults against real processes: the auth example's stream service under uvicorn on a private
redis-server (AOF, fsync always), killed, restarted and fed bad data while clients read.

Every test runs the same ledger: a publisher sends numbered events through the bus and keeps what
Redis acknowledged; clients that reconnect like a browser's `EventSource` (`Last-Event-ID`) read
them; at the end each client is checked for events lost, duplicated and out of order against the
acknowledged ones, and each must be exactly 0, 0, 0. Processes are stopped by PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis
from reliability_helpers import (
    EXAMPLES,
    Follower,
    Ledger,
    PrivateRedis,
    Process,
    run_followers,
    stop_tasks,
    uvicorn_service,
)

from sidestream.bus import AsyncBus, connect_async
from sidestream.hub import Hub
from sidestream.sse import EventStreamParser
from sidestream.testing import wait_until_async
from sidestream.tokens import StreamTokens

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

CHANNELS = ("user:alice", "user:bob", "user:carol")
PER_CHANNEL = 2  # followers per channel
TEST_TIMEOUT = 120  # seconds: every fault test is bounded (they take 10 to 25 s on two cores)


@dataclass
class Rig:
    """A private Redis, the service processes on it, a publisher and the followers."""

    tmp: Path
    redis: PrivateRedis
    key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    services: list[Process] = field(default_factory=list)
    ledger: Ledger = field(default_factory=Ledger)
    followers: list[Follower] = field(default_factory=list)
    sequence: int = 0

    def service(self) -> Process:
        env = {"SIDESTREAM_TOKEN_KEY": self.key, "REDIS_URL": self.redis.url}
        name = f"service{len(self.services)}"
        process = uvicorn_service(self.tmp, name, env, cwd=EXAMPLES / "auth").start()
        self.services.append(process)
        return process

    def token(self, channel: str) -> Callable[[], str]:
        tokens = StreamTokens(self.key)
        return lambda: tokens.issue("reader", subscribe=[channel], lifetime=600)

    def follow(self, channels: tuple[str, ...] = CHANNELS) -> list[Follower]:
        bases = [s.base for s in self.services]
        for n, channel in enumerate(c for c in channels for _ in range(PER_CHANNEL)):
            self.followers.append(Follower(bases, [channel], self.token(channel), start=n))
        return self.followers

    def logs(self) -> str:
        return "".join(s.log_text() for s in self.services)

    async def publish(
        self, bus: AsyncBus, count: int, channels: tuple[str, ...] = CHANNELS, size: int = 0
    ) -> None:
        """Publish until `count` more events were acknowledged (a failed one is not retried
        under the same payload: it may have landed, and then it is simply not counted)."""
        goal = self.ledger.count() + count
        while self.ledger.count() < goal:
            self.sequence += 1
            channel = channels[self.sequence % len(channels)]
            data = f"{self.sequence:08d}" + "x" * size
            try:
                event_id = await bus.publish(channel, data)
            except (redis.RedisError, OSError):
                self.ledger.failures += 1
                await asyncio.sleep(0.05)
                continue
            self.ledger.add(channel, event_id, data)
            await asyncio.sleep(0.005)

    async def all_connected(self) -> None:
        await wait_until_async(
            lambda: all(f.connects >= 1 and f.last_id for f in self.followers), timeout=30
        )

    async def all_delivered(self, timeout: float = 30) -> None:
        def done() -> bool:
            return all(
                len({d for _, _, d in f.events} & self._expected(f)) == len(self._expected(f))
                for f in self.followers
            )

        with contextlib.suppress(AssertionError):  # the verdict says what is missing
            await wait_until_async(done, timeout=timeout, interval=0.1)
        await asyncio.sleep(0.5)  # a duplicate still on its way is counted too

    def _expected(self, follower: Follower) -> set[str]:
        return {d for ch in follower.channels for _, d in self.ledger.acked.get(ch, [])}

    def verdict(self) -> list[dict[str, int]]:
        return [self.ledger.check(f) for f in self.followers]

    def explain(self) -> str:
        """Per follower: its verdict, what it missed, its resets and how it connected."""
        lines = []
        for f, verdict in zip(self.followers, self.verdict(), strict=True):
            got = {d for _, _, d in f.events}
            missing = [d[:8] for ch in f.channels for _, d in self.ledger.acked.get(ch, [])]
            missing = [d for d in missing if not any(g.startswith(d) for g in got)]
            lines.append(
                f"{f.channels} {verdict} missing={missing} resets={f.resets} "
                f"connects={f.connects} statuses={f.statuses}"
            )
        return "\n".join(lines)


ZERO = {"lost": 0, "duplicated": 0, "out_of_order": 0}
Record = Callable[[dict[str, object]], None]


@pytest.fixture
def rig(private_redis: PrivateRedis, tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path, private_redis)
    try:
        yield rig
    finally:
        for service in rig.services:
            service.kill(signal.SIGKILL)


@pytest.fixture
async def bus(private_redis: PrivateRedis) -> AsyncIterator[AsyncBus]:
    client = connect_async(private_redis.url)
    yield AsyncBus(client)
    await client.aclose()


@contextlib.asynccontextmanager
async def following(rig: Rig) -> AsyncIterator[list[Follower]]:
    tasks = await run_followers(rig.followers)
    try:
        async with asyncio.timeout(TEST_TIMEOUT):
            await rig.all_connected()
            yield rig.followers
            await rig.all_delivered()
    finally:
        await stop_tasks(tasks)


def metric(base: str, name: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=5).text
    match = re.search(rf"^sidestream_{name} (\S+)$", text, re.MULTILINE)
    assert match, f"no sidestream_{name} in /metrics"
    return float(match[1])


def assert_clean(rig: Rig, record: Record) -> None:
    verdicts = rig.verdict()
    record(
        {
            "clients": len(rig.followers),
            "acknowledged": rig.ledger.count(),
            "publish_failures": rig.ledger.failures,
            "reconnects": sum(max(0, f.connects - 1) for f in rig.followers),
            "resets": sum(len(f.resets) for f in rig.followers),
            **{k: sum(v[k] for v in verdicts) for k in ZERO},
        }
    )
    assert rig.verdict() == [ZERO] * len(rig.followers), rig.explain()
    assert all(f.events for f in rig.followers)
    assert "Traceback" not in rig.logs(), rig.logs()[-4000:]


async def restart_redis(rig: Rig, health: str | None = None) -> None:
    """SIGKILL Redis and start it again on its AOF; with `health` (a service's base URL), first
    wait until that service's `/healthz` says 503: it cannot deliver while Redis is away."""
    rig.redis.kill(signal.SIGKILL)
    if health is not None:
        async with httpx.AsyncClient(timeout=5) as client:

            async def unavailable() -> bool:
                return (await client.get(f"{health}/healthz")).status_code == 503

            await wait_until_async(unavailable, timeout=20, interval=0.1)
    else:
        await asyncio.sleep(0.5)
    await asyncio.to_thread(rig.redis.start)


async def restart_service(service: Process, signum: int) -> None:
    await asyncio.to_thread(service.kill, signum)
    await asyncio.sleep(0.3)
    await asyncio.to_thread(service.start)


async def publish_through(
    rig: Rig,
    bus: AsyncBus,
    *faults: Callable[[], Awaitable[None]],
    around: int = 30,
    during: int = 60,
) -> None:
    """Publish `around` messages, then `during` more while each fault runs in turn (the
    publisher keeps trying), then `around` again once they are over."""
    await rig.publish(bus, around)
    for fault in faults:
        publisher = asyncio.create_task(rig.publish(bus, during))
        await fault()
        await publisher
    await rig.publish(bus, around)


# --- restarts ---------------------------------------------------------------------------------


async def test_redis_restart_with_aof_loses_nothing(
    rig: Rig, bus: AsyncBus, record: Record
) -> None:
    service = rig.service()
    rig.follow()
    async with following(rig):
        await publish_through(rig, bus, lambda: restart_redis(rig, health=service.base))
    assert rig.ledger.failures > 0  # the publisher saw Redis go away
    assert metric(service.base, "redis_reconnects_total") >= 1
    assert httpx.get(f"{service.base}/healthz", timeout=5).status_code == 200
    assert_clean(rig, record)


async def test_service_sigkill_and_restart_loses_nothing(
    rig: Rig, bus: AsyncBus, record: Record
) -> None:
    service = rig.service()
    rig.follow()
    async with following(rig):
        await publish_through(rig, bus, lambda: restart_service(service, signal.SIGKILL))
    assert all(f.connects >= 2 for f in rig.followers)  # each came back with Last-Event-ID
    assert_clean(rig, record)


async def test_redis_and_service_killed_at_once_lose_nothing(
    rig: Rig, bus: AsyncBus, record: Record
) -> None:
    service = rig.service()
    rig.follow()

    async def kill_both_then_start_them() -> None:
        await asyncio.gather(
            asyncio.to_thread(service.kill, signal.SIGKILL),
            asyncio.to_thread(rig.redis.kill, signal.SIGKILL),
        )
        await asyncio.sleep(0.5)
        await asyncio.to_thread(rig.redis.start)
        await asyncio.to_thread(service.start)

    async with following(rig):
        await publish_through(rig, bus, kill_both_then_start_them)
    assert rig.ledger.failures > 0
    assert all(f.connects >= 2 for f in rig.followers)
    assert_clean(rig, record)


async def test_rolling_restart_of_two_services_loses_nothing(
    rig: Rig, bus: AsyncBus, record: Record
) -> None:
    first, second = rig.service(), rig.service()
    rig.follow()  # followers alternate between the two, and move on when one goes away
    async with following(rig):
        await publish_through(  # SIGTERM drains: a last retry, then exit
            rig,
            bus,
            lambda: restart_service(first, signal.SIGTERM),
            lambda: restart_service(second, signal.SIGTERM),
            around=20,
            during=40,
        )
    assert all(f.connects >= 2 for f in rig.followers)
    assert any(f.closes for f in rig.followers)  # the drain said goodbye with `close`
    assert_clean(rig, record)


# --- bad data written by someone else -------------------------------------------------------------

POISON = [  # (channel, payload): each is skipped whatever order the checks run in
    (0, b"not-an-id\n\npoison: not the bus's format"),
    (0, b"99999999999997-0\nbad\rtype\npoison: CR in the event type"),
    (0, b"99999999999998-0\n\n\xff\xfe poison: not UTF-8"),
    (0, b"99999999999999-0\n\npoison: an id far ahead of the stream"),
    (0, b"poison: no newline at all"),
    (1, b"not-an-id\n\npoison: on another channel"),
]


async def test_poison_message_is_skipped_and_hurts_no_one(
    rig: Rig, bus: AsyncBus, record: Record
) -> None:
    service = rig.service()
    rig.follow()
    raw = redis.Redis(port=rig.redis.port)
    try:
        async with following(rig):
            await rig.publish(bus, 20)
            for channel, payload in POISON:  # a foreign writer, straight onto a live channel
                assert raw.publish(bus.live_channel(CHANNELS[channel]), payload) == 1
                await rig.publish(bus, 5)
            await rig.publish(bus, 30)
        health = httpx.get(f"{service.base}/healthz", timeout=5)
        assert health.status_code == 200 and health.json()["status"] == "ok", health.text
        assert metric(service.base, "poison_messages_total") == len(POISON)
    finally:
        raw.close()
    assert not any("poison" in d for f in rig.followers for _, _, d in f.events)
    assert_clean(rig, record)


JUNK = [  # what another producer might XADD: each is skipped and counted on replay
    {"data": "poison: LF in the type", "event": "a\nb"},
    {"data": b"\xff\xfe poison: not UTF-8", "event": ""},
    {"nothing": "poison: no data field"},
]


async def test_invalid_stream_entry_from_a_foreign_writer_is_skipped(
    rig: Rig, bus: AsyncBus, record: Record
) -> None:
    await _replay_over_junk(rig, bus, record, JUNK)


async def test_a_foreign_entrys_prev_field_is_not_taken_for_a_history_gap(
    rig: Rig, bus: AsyncBus, record: Record
) -> None:
    """The bus stores in `prev` the id each event follows, to tell a trimmed history from a
    whole one. A foreign entry that writes `prev` too (here 0-0, "the stream began anew") is
    skipped as invalid: its `prev` must not make a replay report a gap (a `reset` in place of
    events the Stream still holds)."""
    forged = [{**JUNK[0], "prev": "0-0"}, *JUNK[1:]]
    await _replay_over_junk(rig, bus, record, forged)


async def _replay_over_junk(
    rig: Rig, bus: AsyncBus, record: Record, junk: list[dict[str, str | bytes]]
) -> None:
    service = rig.service()
    channel = CHANNELS[0]
    seed = await bus.publish(channel, "seed")  # where the late reader starts: before the junk
    rig.follow()
    raw = redis.Redis(port=rig.redis.port)
    late = Follower([service.base], [channel], rig.token(channel), last_id=seed)
    try:
        async with following(rig):
            await rig.publish(bus, 10)
            for fields in junk:
                raw.xadd(bus.stream_key(channel), fields)  # type: ignore[arg-type]
            # The hub's own replay path: its pub/sub connection is dropped; it must replay the
            # Stream from the last id it delivered, through the junk.
            raw.client_kill_filter(_type="pubsub")
            await rig.publish(bus, 10)
            rig.followers.append(late)  # replays the junk from `seed` on its first request
            task = asyncio.create_task(late.run())
            try:
                await rig.publish(bus, 10)
                await rig.all_delivered()
            finally:
                await stop_tasks([task])
        assert metric(service.base, "invalid_stream_entries_total") >= len(junk)
    finally:
        raw.close()
    assert late.statuses and set(late.statuses) == {200}, late.bodies
    assert not any("poison" in d for f in rig.followers for _, _, d in f.events)
    assert_clean(rig, record)


# --- a client that stops reading ------------------------------------------------------------------


async def test_stalled_reader_is_cut_off_and_others_get_everything(
    rig: Rig, bus: AsyncBus, record: Record
) -> None:
    service = rig.service()
    channel = CHANNELS[0]
    rig.follow((channel,))
    token = rig.token(channel)()
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills fast; never read
    stalled.connect(("127.0.0.1", service.port))
    stalled.sendall(
        f"GET /events?channel={channel}&token={token} HTTP/1.1\r\nHost: x\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    try:
        async with following(rig):
            # 32 KB events: the stalled socket's buffers fill within a few MB, then its queue.
            await rig.publish(bus, 600, (channel,), size=32_000)
        assert metric(service.base, "slow_consumer_cutoffs_total") >= 1
        # The server drops the stalled connection (after its grace period): reading what is
        # buffered ends in EOF or a reset, not in a wait.
        stalled.settimeout(30)
        ended = time.monotonic() + 30
        with contextlib.suppress(ConnectionResetError):
            while time.monotonic() < ended and await asyncio.to_thread(stalled.recv, 1 << 20):
                pass
        assert time.monotonic() < ended, "the stalled connection was never closed"
    finally:
        stalled.close()
    assert_clean(rig, record)


async def test_a_frozen_redis_is_pinged_given_up_on_and_replayed_after(
    private_redis: PrivateRedis, bus: AsyncBus, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis stops answering (SIGSTOP) without closing the connection: after `ping_interval` of
    silence the hub sends PING, after as long again without an answer it drops the session, and
    once Redis answers again it reconnects and replays: each event exactly once."""
    interval = 0.3
    async with Hub(bus, heartbeat=60, ping_interval=interval, reconnect_delay=(0.05, 0.2)) as hub:
        sub = await hub.subscribe(["frozen"])
        first = await bus.publish("frozen", "before")
        private_redis.proc.send_signal(signal.SIGSTOP)
        try:
            await wait_until_async(lambda: hub.listener.reconnects >= 1, timeout=10 * interval)
        finally:
            private_redis.proc.send_signal(signal.SIGCONT)
        second = await bus.publish("frozen", "after")
        parser = EventStreamParser()
        events = parser.feed(sub.preamble)
        async with asyncio.timeout(10):
            while len(events) < 2:
                events += parser.feed(await sub.next_chunk())
        assert [(e.id, e.data) for e in events] == [(first, "before"), (second, "after")]
    assert f"no answer to PING in {interval:g}s" in caplog.text
