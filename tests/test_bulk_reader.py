"""sidestream.bulk_reader: every reply of a read handed over in order, pauses that keep the order,
and every way a connection can end reported once — on a stand-in transport (bytes fed by hand),
then on real Redis through the hub.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from sidestream import bulk_reader
from sidestream.bulk_reader import YIELD_EVERY, BulkReader, attach
from sidestream.bus import AsyncBus, connect_async
from sidestream.cursor import parse_cursor
from sidestream.hub import Hub
from sidestream.listener import PubSubListener
from sidestream.sse import EventStreamParser
from sidestream.testing import wait_until_async


class OriginalProtocol:
    """What redis-py's stream protocol hears once the bulk reader has the socket."""

    def __init__(self) -> None:
        self.heard: list[Any] = []

    def eof_received(self) -> bool:
        self.heard.append("eof")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.heard.append(("lost", exc))

    def pause_writing(self) -> None:
        self.heard.append("pause_writing")

    def resume_writing(self) -> None:
        self.heard.append("resume_writing")


class Transport:
    """A socket transport stand-in: records writes, pauses and closing."""

    def __init__(self) -> None:
        self.protocol: Any = OriginalProtocol()
        self.written: list[bytes] = []
        self.paused = False
        self.pauses = 0
        self.closed = False

    def get_protocol(self) -> Any:
        return self.protocol

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def pause_reading(self) -> None:
        assert not self.paused
        self.paused, self.pauses = True, self.pauses + 1

    def resume_reading(self) -> None:
        self.paused = False

    def writelines(self, chunks: list[bytes]) -> None:
        self.written.append(b"".join(chunks))

    def close(self) -> None:
        self.closed = True


class Connection:
    """A connected redis-py connection, as far as `attach` looks at one."""

    def __init__(self) -> None:
        self.transport = Transport()
        self._writer = type("Writer", (), {"transport": self.transport})()

    @staticmethod
    def pack_command(*args: Any) -> list[bytes]:
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
        return parts


def message(channel: str, data: str, *, push: bool = False) -> bytes:
    """One pub/sub message as Redis writes it (RESP2 array or RESP3 push)."""
    head = b">3\r\n" if push else b"*3\r\n"
    return head + b"".join(
        b"$%d\r\n%b\r\n" % (len(p), p) for p in (b"message", channel.encode(), data.encode())
    )


async def attached(handle: Any) -> tuple[BulkReader, Connection]:
    connection = Connection()
    reader, why = attach(connection, handle)
    assert reader is not None, why
    assert connection.transport.protocol is reader
    return reader, connection


async def test_every_reply_of_one_read_is_handed_over_in_order() -> None:
    got: list[Any] = []
    reader, _ = await attached(got.append)
    reader.data_received(b"".join(message("a", str(i), push=i % 2 == 1) for i in range(10)))
    assert [(r[1], r[2]) for r in got] == [(b"a", str(i).encode()) for i in range(10)]


async def test_a_reply_split_across_reads_is_handed_over_once_complete() -> None:
    got: list[Any] = []
    reader, _ = await attached(got.append)
    whole = message("a", "x" * 100) + message("b", "y")
    for i in range(len(whole)):  # a byte at a time
        reader.data_received(whole[i : i + 1])
    assert [(r[1], r[2]) for r in got] == [(b"a", b"x" * 100), (b"b", b"y")]


async def test_a_follow_up_pauses_reading_until_done_and_keeps_the_order() -> None:
    got: list[bytes] = []
    gate = asyncio.Event()

    async def check() -> None:
        await gate.wait()
        got.append(b"checked")

    def handle(reply: Any) -> Any:
        got.append(reply[2])
        return check() if reply[2] == b"2" else None

    reader, connection = await attached(handle)
    reader.data_received(b"".join(message("a", str(i)) for i in range(5)))
    assert got == [b"0", b"1", b"2"] and connection.transport.paused
    reader.data_received(message("a", "5"))  # what the socket still had: parsed later
    await asyncio.sleep(0.01)
    assert got == [b"0", b"1", b"2"]
    gate.set()
    await asyncio.sleep(0.01)
    assert got == [b"0", b"1", b"2", b"checked", b"3", b"4", b"5"]
    assert not connection.transport.paused and not reader.ended.done()


async def test_a_long_read_lets_the_loop_run_every_so_many_replies() -> None:
    got: list[Any] = []
    reader, connection = await attached(got.append)
    count = YIELD_EVERY * 3 + 5
    reader.data_received(b"".join(message("a", str(i)) for i in range(count)))
    assert len(got) == YIELD_EVERY and connection.transport.paused
    for _ in range(5):
        await asyncio.sleep(0)
    assert [int(r[2]) for r in got] == list(range(count))
    assert connection.transport.pauses == 3 and not connection.transport.paused


async def test_a_command_is_written_with_the_connections_packer() -> None:
    reader, connection = await attached(lambda reply: None)
    reader.send("SUBSCRIBE", "a", "b")
    assert connection.transport.written == [b"*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$1\r\nb\r\n"]


@pytest.mark.parametrize(
    ("ending", "expected"),
    [
        (
            lambda reader: reader.data_received(b"-NOAUTH Authentication required.\r\n"),
            ResponseError,
        ),
        (lambda reader: reader.data_received(b"?not resp\r\n"), RedisConnectionError),
        (lambda reader: reader.eof_received(), RedisConnectionError),
        (lambda reader: reader.connection_lost(None), RedisConnectionError),
        (lambda reader: reader.connection_lost(OSError("reset")), OSError),
    ],
    ids=["error reply", "protocol error", "eof", "closed", "reset"],
)
async def test_every_ending_is_reported_once_and_closes_the_socket(
    ending: Any, expected: type
) -> None:
    got: list[Any] = []
    reader, connection = await attached(got.append)
    ending(reader)
    assert reader.ended.done() and isinstance(reader.ended.result(), expected)
    assert connection.transport.closed
    reader.data_received(message("a", "late"))  # nothing is handed over once ended
    reader.connection_lost(None)
    assert got == [] and isinstance(reader.ended.result(), expected)


async def test_a_handler_that_raises_ends_the_connection_with_its_error() -> None:
    def handle(reply: Any) -> None:
        raise KeyError("a bug")

    reader, connection = await attached(handle)
    reader.data_received(message("a", "x"))
    assert isinstance(reader.ended.result(), KeyError) and connection.transport.closed


async def test_redis_pys_protocol_still_hears_of_closing_and_flow_control() -> None:
    reader, connection = await attached(lambda reply: None)
    original = connection.transport.get_protocol()._original
    reader.pause_writing()
    reader.resume_writing()
    reader.eof_received()
    reader.connection_lost(None)
    assert original.heard == ["pause_writing", "resume_writing", "eof", ("lost", None)]


async def test_attach_says_why_it_cannot_take_over(monkeypatch: pytest.MonkeyPatch) -> None:
    assert attach(object(), print) == (
        None,
        "the connection has no socket transport (fakeredis, or another redis-py)",
    )
    monkeypatch.setattr(bulk_reader, "hiredis", None)
    assert attach(Connection(), print) == (None, "hiredis is not installed")


# -- on real Redis, through the hub ------------------------------------------------------------


async def test_on_real_redis_the_hub_reads_in_bulk_and_loses_nothing_of_a_burst(
    redis_url: str, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """2,000 publishes sent at once arrive many to a read: every event, once, in id order."""
    client = connect_async(redis_url)
    bus = AsyncBus(client, prefix=key_prefix)
    with caplog.at_level(logging.INFO, logger="sidestream.hub"):
        async with Hub(bus, heartbeat=60, queue_size=5000) as hub:
            sub = await hub.subscribe(["burst"])
            assert hub.listener.session is not None and hub.listener.session.bulk is not None, (
                "the hub reads through redis-py (see the log for why): " + caplog.text
            )
            slots = asyncio.Semaphore(50)  # redis-py's pool holds 100 connections at most

            async def publish(data: str) -> str:
                async with slots:
                    return await bus.publish("burst", data)

            ids = await asyncio.gather(*(publish(str(i)) for i in range(2000)))
            parser, events = EventStreamParser(), []
            parser.feed(sub.preamble)
            async with asyncio.timeout(10):
                while len(events) < 2000:
                    events += parser.feed(await sub.next_chunk())
            published = dict(zip(ids, (str(i) for i in range(2000)), strict=True))
            assert [e.id for e in events] == sorted(ids, key=parse_cursor)
            assert {e.id: e.data for e in events} == published
    # (The process logs which way its hub reads once: an earlier test may have been first.)
    keys = [key async for key in client.scan_iter(match=f"{key_prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_a_follow_up_longer_than_the_ping_timeout_is_not_taken_for_silence(
    redis_url: str, key_prefix: str
) -> None:
    """Reading pauses while a follow-up runs (a replay can take seconds with thousands of
    channels): the listener must not count that as Redis's silence and drop the session."""
    interval = 0.4
    live = f"{key_prefix}slow"

    class Host:
        subscribed = 0
        lost = 0

        def wanted(self) -> list[str]:
            return [live]

        def is_wanted(self, name: str) -> bool:
            return name == live

        def on_message(self, name: Any, payload: Any) -> None:
            return None

        async def on_subscribed(self, name: str) -> None:
            await asyncio.sleep(interval * 5)  # far past PING and its timeout
            self.subscribed += 1

        def on_lost(self) -> None:
            self.lost += 1

    host = Host()
    client = connect_async(redis_url)
    listener = PubSubListener(client, host, ping_interval=interval, reconnect_delay=(0.05, 0.1))
    listener.start()
    try:
        await wait_until_async(lambda: host.subscribed == 1, timeout=5)
        await asyncio.sleep(interval * 3)  # and the quiet after it is answered by PING
        assert listener.session is not None and listener.session.bulk is not None
        assert (listener.reconnects, host.lost) == (0, 0)
    finally:
        await listener.aclose()
        await client.aclose()


async def test_a_follow_up_under_way_when_the_connection_ends_is_cancelled_and_waited_for() -> None:
    """A replay or a start position read for a session that is over must not finish after the
    listener has told the hub the session was lost (it would mark a channel up to date that the
    next session has to catch up): `_end` cancels it and `settle` waits until it is over."""
    started, ended = asyncio.Event(), []

    async def catch_up() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            ended.append("cancelled")
            raise
        ended.append("finished")

    reader, _ = await attached(lambda reply: catch_up())
    reader.data_received(message("a", "x"))
    await started.wait()
    reader.connection_lost(OSError("reset"))
    await asyncio.wait_for(reader.settle(), 1)
    assert ended == ["cancelled"]
    await reader.settle()  # nothing under way: returns at once


async def test_hiredis_false_is_a_reply_not_the_end_of_the_buffer() -> None:
    got: list[Any] = []
    reader, _ = await attached(got.append)
    reader.data_received(b"#f\r\n" + message("a", "after"))  # a RESP3 boolean, then a message
    assert got[0] is False and got[1][2] == b"after"
