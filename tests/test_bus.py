"""sidestream.bus on the embedded fakeredis and on real Redis (every test runs on both)."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import fakeredis
import pytest
import redis
import redis.asyncio

from sidestream import bus as bus_module
from sidestream.bus import (
    SOCKET_TIMEOUT,
    AsyncBus,
    Bus,
    connect,
    connect_async,
    decode_live,
    parse_cursor,
    validate_channel,
)
from sidestream.errors import (
    CursorAhead,
    HistoryGap,
    InvalidArgument,
    InvalidChannel,
    InvalidConfig,
    InvalidCursor,
    InvalidEvent,
    PayloadTooLarge,
)
from sidestream.sse import Event


@pytest.fixture
def bus(sync_bus: Bus) -> Bus:
    return sync_bus


@pytest.fixture
async def abus(backend_url: str, key_prefix: str) -> AsyncIterator[AsyncBus]:
    client = connect_async(backend_url)
    yield AsyncBus(client, prefix=key_prefix)
    await client.aclose()


def count_commands(monkeypatch: pytest.MonkeyPatch, client: Any) -> list[tuple[Any, ...]]:
    """Record every command the bus sends through `client` (sync or async)."""
    sent: list[tuple[Any, ...]] = []
    original = client.execute_command

    def recording(*args: Any, **options: Any) -> Any:
        sent.append(args)
        return original(*args, **options)

    monkeypatch.setattr(client, "execute_command", recording)
    return sent


def later(seconds: float, action: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(seconds), action()))
    thread.start()
    return thread


# --- publish, history, latest_id ------------------------------------------------------------


def test_publish_returns_stream_ids_that_history_returns_in_order(bus: Bus) -> None:
    ids = [bus.publish("orders", f'{{"n": {n}}}', event="created") for n in range(5)]
    assert [parse_cursor(i) for i in ids] == sorted(parse_cursor(i) for i in ids)
    assert len(set(ids)) == 5
    assert bus.history("orders") == [
        Event(data=f'{{"n": {n}}}', event="created", id=i) for n, i in enumerate(ids)
    ]


def test_history_is_strictly_after_the_cursor_and_bounded_by_limit(bus: Bus) -> None:
    ids = [bus.publish("c", str(n)) for n in range(6)]
    assert [e.id for e in bus.history("c", after_id=ids[2])] == ids[3:]
    assert [e.id for e in bus.history("c", after_id=ids[2], limit=2)] == ids[3:5]
    assert bus.history("c", after_id=ids[-1]) == []
    assert [e.data for e in bus.history("c", after_id="0", limit=1)] == ["0"]


def test_default_event_type_is_none_and_data_keeps_line_breaks(bus: Bus) -> None:
    bus.publish("c", "line one\nline two\r\nthree")
    assert bus.history("c")[0].event is None
    assert bus.history("c")[0].data == "line one\nline two\r\nthree"


def test_latest_id(bus: Bus) -> None:
    assert bus.latest_id("empty") == "0-0"
    assert bus.history("empty") == []
    first = bus.publish("c", "a")
    assert bus.latest_id("c") == first
    second = bus.publish("c", "b")
    assert bus.latest_id("c") == second


def test_channels_and_prefixes_are_separate(bus: Bus, backend_url: str, key_prefix: str) -> None:
    other = Bus(bus.redis, prefix=f"{key_prefix}other:")
    bus.publish("a", "on a")
    other.publish("a", "other prefix")
    bus.publish("b", "on b")
    assert [e.data for e in bus.history("a")] == ["on a"]
    assert [e.data for e in other.history("a")] == ["other prefix"]
    assert bus.stream_key("a") == f"{key_prefix}stream:{{a}}"
    assert bus.live_channel("a") == f"{key_prefix}live:{{a}}"
    assert bus.redis.type(bus.stream_key("a")) == b"stream"


# --- wait ---------------------------------------------------------------------------------------


def test_wait_returns_at_once_when_events_exist(bus: Bus) -> None:
    ids = [bus.publish("c", str(n)) for n in range(3)]
    assert [e.id for e in bus.wait("c", after_id=ids[0], timeout=30)] == ids[1:]


def test_wait_times_out_with_an_empty_list(bus: Bus) -> None:
    last = bus.publish("c", "old")
    assert bus.wait("c", after_id=last, timeout=0.2) == []
    assert bus.wait("c", after_id=last, timeout=0) == []


def test_wait_wakes_on_a_publish_from_another_client(bus: Bus, backend_url: str) -> None:
    last = bus.latest_id("c")
    publisher = Bus(connect(backend_url), prefix=bus.prefix)
    ids: list[str] = []
    thread = later(0.2, lambda: ids.append(publisher.publish("c", "news", event="note")))
    events = bus.wait("c", after_id=last, timeout=10)
    thread.join()
    assert events == [Event(data="news", event="note", id=ids[0])]


def test_wait_sends_one_xread_and_nothing_while_waiting(
    bus: Bus, backend_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    last = bus.publish("c", "old")
    sent = count_commands(monkeypatch, bus.redis)
    assert bus.wait("c", after_id=last, timeout=0.5) == []
    # First one O(1) look at the newest id (is the cursor ahead of the stream?), then the wait.
    assert sent == [
        ("XREVRANGE", bus.stream_key("c"), "+", "-", "COUNT", 1),
        ("XREAD", "COUNT", 100, "BLOCK", 500, "STREAMS", bus.stream_key("c"), last),
    ]

    sent.clear()
    publisher = Bus(connect(backend_url), prefix=bus.prefix)  # another client: not counted
    thread = later(0.3, lambda: publisher.publish("c", "x"))
    events = bus.wait("c", after_id=last, timeout=10)
    thread.join()
    assert [command[0] for command in sent] == ["XREVRANGE", "XREAD"]
    assert [e.data for e in events] == ["x"]


def test_wait_slices_the_block_to_fit_a_short_socket_timeout(
    backend_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # redis-py 8 gives connections a 5 s socket timeout unless told otherwise; an XREAD BLOCK
    # longer than that would fail. With socket_timeout=0.4 the bus blocks 0.2 s at a time.
    if backend_url == "memory://":
        client: Any = fakeredis.FakeRedis(server=bus_module.fake_server(), socket_timeout=0.4)
    else:
        client = redis.Redis.from_url(backend_url, socket_timeout=0.4)
    short = Bus(client, prefix=key_prefix)
    sent = count_commands(monkeypatch, client)
    assert short.wait("c", after_id="0", timeout=0.5) == []
    blocks = [command[4] for command in sent if command[0] == "XREAD"]
    # Each slice fits the socket timeout. How many slices a 0.5 s wait takes depends on how
    # promptly the server ends a block (real Redis checks block timeouts about every 100 ms).
    assert blocks[0] == 200
    assert 2 <= len(blocks) <= 3
    assert all(0 < block <= 200 for block in blocks)
    client.close()


def test_connect_sets_a_socket_timeout_longer_than_any_long_poll(backend_url: str) -> None:
    client = connect(backend_url)
    assert client.connection_pool.connection_kwargs["socket_timeout"] == SOCKET_TIMEOUT > 30
    client.close()


@pytest.mark.redis
def test_waiting_costs_zero_commands_on_the_server(redis_url: str, key_prefix: str) -> None:
    # Server-side truth: MONITOR sees every command Redis runs. Our waiting connection must
    # appear exactly once (its XREAD) between two markers, even while the wait lasts 1.5 s.
    client = redis.Redis.from_url(
        redis_url, socket_timeout=SOCKET_TIMEOUT, single_connection_client=True
    )
    waiter = Bus(client, prefix=key_prefix)
    addr = client.client_info()["addr"]
    last = waiter.publish("c", "old")
    with Monitor(redis_url) as monitor:
        client.echo("start-marker")
        assert waiter.wait("c", after_id=last, timeout=1.5) == []
        client.echo("end-marker")
        lines = monitor.lines_until('"end-marker"')
    mine = [line for line in lines if f" {addr}]" in line]
    assert [line.split('"')[1] for line in mine] == ["ECHO", "XREVRANGE", "XREAD", "ECHO"]
    assert '"BLOCK" "1500"' in mine[2]
    client.close()


class Monitor:
    """A raw MONITOR connection, read in a thread (redis-py's monitor() has no read timeout)."""

    def __init__(self, url: str) -> None:
        info = redis.connection.parse_url(url)
        self.sock = socket.create_connection(
            (info.get("host", "127.0.0.1"), info.get("port", 6379))
        )
        self.sock.settimeout(5)
        if info.get("password"):
            self.sock.sendall(f"AUTH {info['password']}\r\n".encode())
            self._read_line()
        self.buffer = b""

    def _read_line(self) -> str:
        while b"\r\n" not in self.buffer:
            self.buffer += self.sock.recv(65536)
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line.decode(errors="replace")

    def __enter__(self) -> Monitor:
        self.buffer = b""
        self.sock.sendall(b"MONITOR\r\n")
        assert self._read_line() == "+OK"
        return self

    def lines_until(self, marker: str) -> list[str]:
        lines = []
        while True:
            line = self._read_line()
            lines.append(line)
            if marker in line:
                return lines

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


# --- gaps ---------------------------------------------------------------------------------------


def test_trimmed_history_raises_history_gap_exactly_when_events_were_lost(
    backend_url: str, key_prefix: str
) -> None:
    bus = Bus(connect(backend_url), prefix=key_prefix, maxlen=10)
    ids = [bus.publish("c", str(n)) for n in range(300)]
    oldest = bus.redis.xrange(bus.stream_key("c"), count=1)[0][0].decode()
    retained = ids[ids.index(oldest) :]
    # MAXLEN ~ trims whole blocks: fewer than 300 kept, at least 10, and always the newest.
    assert 10 <= len(retained) < 300
    just_before = ids[-len(retained) - 1]
    # A cursor at the last trimmed event lost nothing: no gap.
    assert [e.id for e in bus.history("c", after_id=just_before, limit=1000)] == retained
    assert bus.wait("c", after_id=just_before, timeout=1)[0].id == retained[0]
    # One event earlier, and that event is gone: a gap, from history and from wait.
    for read in (
        lambda cursor: bus.history("c", after_id=cursor),
        lambda cursor: bus.wait("c", after_id=cursor, timeout=1),
    ):
        for cursor in (ids[-len(retained) - 2], ids[0], "0"):
            with pytest.raises(HistoryGap) as caught:
                read(cursor)
            assert caught.value.latest_id == ids[-1]
            assert caught.value.oldest_id == retained[0]
            assert caught.value.channel == "c"
            assert "reload state and continue from" in str(caught.value)
    bus.redis.close()


def test_a_recreated_stream_is_a_gap_for_old_cursors(bus: Bus) -> None:
    # What a Redis restart without persistence looks like: the stream starts over.
    old = bus.publish("c", "before the restart")
    bus.redis.delete(bus.stream_key("c"))
    time.sleep(0.005)  # a restart takes longer than the millisecond that stream ids count in
    new = bus.publish("c", "after the restart")
    assert parse_cursor(new) > parse_cursor(old)
    with pytest.raises(HistoryGap) as caught:
        bus.history("c", after_id=old)
    assert caught.value.latest_id == new
    with pytest.raises(HistoryGap):
        bus.wait("c", after_id=old, timeout=1)
    # From the start ("0") nothing of this stream is missing.
    assert [e.data for e in bus.history("c", after_id="0")] == ["after the restart"]


def test_concurrent_publishers_keep_the_prev_chain_intact(bus: Bus, backend_url: str) -> None:
    # Each entry records the id it follows; the script makes read-then-append atomic, so under
    # concurrent publishers every entry's prev is exactly the entry before it (no false gaps).
    def publish_many(worker: int) -> None:
        own = Bus(connect(backend_url), prefix=bus.prefix)
        for n in range(50):
            own.publish("c", f"{worker}:{n}")

    threads = [threading.Thread(target=publish_many, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    entries = bus.redis.xrange(bus.stream_key("c"))
    assert len(entries) == 200
    prevs = [fields[b"prev"] for _, fields in entries]
    assert prevs == [b"0-0"] + [entry_id for entry_id, _ in entries[:-1]]
    assert len(bus.history("c", after_id="0", limit=1000)) == 200


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["", " orders", "-orders", "a b", "a{b}", "ü", "x" * 129, "a\nb", "a*", None, 42]
)
def test_bad_channel_names_are_refused(bus: Bus, name: Any) -> None:
    with pytest.raises(InvalidChannel, match="letters, digits"):
        bus.publish(name, "x")
    with pytest.raises(InvalidChannel):
        bus.history(name)
    with pytest.raises(InvalidChannel):
        validate_channel(name)


@pytest.mark.parametrize("name", ["a", "orders", "user:42", "a/b.c_d-e", "9", "x" * 128])
def test_good_channel_names(name: str) -> None:
    assert validate_channel(name) == name


@pytest.mark.parametrize("cursor", ["", "abc", "1-", "-1", "1-2-3", "1.5", " 1", "$", "1" * 21])
def test_bad_cursors_are_refused(bus: Bus, cursor: str) -> None:
    with pytest.raises(InvalidCursor, match="last event you received"):
        bus.history("c", after_id=cursor)
    with pytest.raises(InvalidCursor):
        bus.wait("c", after_id=cursor, timeout=0)


def test_cursor_parts_must_fit_64_bits() -> None:
    assert parse_cursor("18446744073709551615-18446744073709551615") == (2**64 - 1, 2**64 - 1)
    with pytest.raises(InvalidCursor):
        parse_cursor("18446744073709551616-0")
    assert parse_cursor("5") == (5, 0)


def test_a_millisecond_cursor_means_sequence_zero(bus: Bus) -> None:
    first = bus.publish("c", "a")
    ms = first.split("-")[0]
    assert [e.id for e in bus.history("c", after_id=ms)] == [e.id for e in bus.history("c", first)]


@pytest.mark.parametrize("event", ["", "a\nb", "a\rb", "a\0b", "x" * 257, 5])
def test_bad_event_types_are_refused(bus: Bus, event: Any) -> None:
    with pytest.raises(InvalidEvent, match="event type"):
        bus.publish("c", "x", event=event)
    assert bus.latest_id("c") == "0-0"


def test_data_must_be_text(bus: Bus) -> None:
    with pytest.raises(InvalidEvent, match=r"json\.dumps"):
        bus.publish("c", {"not": "text"})  # type: ignore[arg-type]


def test_data_size_is_capped_in_utf8_bytes(backend_url: str, key_prefix: str) -> None:
    small = Bus(connect(backend_url), prefix=key_prefix, max_data_bytes=10)
    small.publish("c", "é" * 5)  # 10 bytes
    with pytest.raises(PayloadTooLarge, match="11 bytes, over this bus's cap of 10"):
        small.publish("c", "é" * 5 + "a")
    with pytest.raises(PayloadTooLarge):
        small.publish_live("c", "x" * 11)
    assert [e.data for e in small.history("c")] == ["é" * 5]
    small.redis.close()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"timeout": -1}, "timeout must be"),
        ({"timeout": "5"}, "timeout must be"),
        ({"timeout": float("nan")}, "timeout must be"),
        ({"timeout": 1, "limit": 0}, "limit must be"),
        ({"timeout": 1, "limit": 10_001}, "limit must be"),
    ],
)
def test_bad_wait_arguments_are_refused(bus: Bus, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        bus.wait("c", after_id="0", **kwargs)


@pytest.mark.parametrize(
    "kwargs", [{"maxlen": 0}, {"max_data_bytes": 0}, {"prefix": None}, {"maxlen": "10"}]
)
def test_bad_bus_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        Bus(connect("memory://"), **kwargs)


# --- live (pub/sub) -----------------------------------------------------------------------------


def read_live(client: redis.Redis, channel: str, count: int) -> Callable[[], list[Any]]:
    """Subscribe now; the returned function collects `count` messages (or what came in 5 s)."""
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not pubsub.subscribed:
        pubsub.get_message(timeout=0.05)

    def collect() -> list[Any]:
        got: list[Any] = []
        while len(got) < count and time.monotonic() < deadline + 5:
            message = pubsub.get_message(timeout=0.1)
            if message is not None:
                got.append(message["data"])
        pubsub.close()
        return got

    return collect


def test_publish_announces_the_event_on_the_live_channel(bus: Bus) -> None:
    collect = read_live(bus.redis, bus.live_channel("c"), 2)
    first = bus.publish("c", "hello\nworld", event="note")
    second = bus.publish("c", "plain")
    assert [decode_live(payload) for payload in collect()] == [
        Event(data="hello\nworld", event="note", id=first),
        Event(data="plain", event=None, id=second),
    ]


def test_publish_live_is_fire_and_forget(bus: Bus) -> None:
    assert bus.publish_live("c", "nobody listens") == 0
    collect = read_live(bus.redis, bus.live_channel("c"), 1)
    assert bus.publish_live("c", "cursor at 3,4", event="cursor") == 1
    assert [decode_live(payload) for payload in collect()] == [
        Event(data="cursor at 3,4", event="cursor", id=None)
    ]
    # No history: nothing to resume from, and waiting after "0" sees nothing.
    assert bus.history("c") == []
    assert bus.latest_id("c") == "0-0"
    assert bus.wait("c", after_id="0", timeout=0) == []


def test_decode_live_refuses_foreign_payloads() -> None:
    assert decode_live("1-0\n\nx\ny") == Event(data="x\ny", id="1-0")
    with pytest.raises(ValueError, match="not a sidestream live message"):
        decode_live(b"just text")


def test_publish_is_all_or_nothing(bus: Bus) -> None:
    # A MULTI/EXEC would run PUBLISH even after XADD failed; the script stops at the first error.
    bus.redis.set(bus.stream_key("c"), "not a stream")
    collect = read_live(bus.redis, bus.live_channel("c"), 1)
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        bus.publish("c", "x")
    bus.publish_live("c", "the only message")
    assert [decode_live(payload).data for payload in collect()] == ["the only message"]


def test_publish_is_one_command_once_the_script_is_cached(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus.publish("c", "warm the script cache")
    sent = count_commands(monkeypatch, bus.redis)
    bus.publish("c", "x")
    assert [command[0] for command in sent] == ["EVALSHA"]


def test_a_server_without_the_script_gets_it_once(monkeypatch: pytest.MonkeyPatch) -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    sent = count_commands(monkeypatch, client)
    fresh = Bus(client)
    fresh.publish("c", "1")
    fresh.publish("c", "2")
    assert [command[0] for command in sent] == ["EVALSHA", "EVAL", "EVALSHA"]


# --- clients of every flavour -------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [{}, {"protocol": 2}, {"protocol": 3}, {"decode_responses": True, "protocol": 3}],
    ids=["default", "resp2", "resp3", "resp3-decoded"],
)
def test_any_client_flavour_works(
    backend_url: str, key_prefix: str, options: dict[str, Any]
) -> None:
    if backend_url == "memory://":
        client: Any = fakeredis.FakeRedis(server=bus_module.fake_server(), **options)
    else:
        client = redis.Redis.from_url(backend_url, **options)
    flavoured = Bus(client, prefix=key_prefix)
    first = flavoured.publish("c", "a", event="e")
    second = flavoured.publish("c", "b")
    assert flavoured.history("c") == [Event("a", "e", first), Event("b", None, second)]
    assert flavoured.wait("c", after_id=first, timeout=1) == [Event("b", None, second)]
    assert flavoured.latest_id("c") == second
    client.close()


def test_connect_reads_redis_url_from_the_environment(
    backend_url: str, monkeypatch: pytest.MonkeyPatch, key_prefix: str
) -> None:
    monkeypatch.setenv("REDIS_URL", backend_url)
    written = Bus(connect(), prefix=key_prefix)
    written.publish("c", "via REDIS_URL")
    read = Bus(connect(backend_url), prefix=key_prefix)
    assert [e.data for e in read.history("c")] == ["via REDIS_URL"]
    is_fake = isinstance(written.redis, fakeredis.FakeRedis)
    assert is_fake == (backend_url == "memory://")


@pytest.mark.parametrize("unset", [None, "", "  "])
def test_an_unset_redis_url_is_an_error_naming_both_choices(
    monkeypatch: pytest.MonkeyPatch, unset: str | None
) -> None:
    if unset is None:
        monkeypatch.delenv("REDIS_URL", raising=False)
    else:
        monkeypatch.setenv("REDIS_URL", unset)
    for make in (connect, connect_async):
        with pytest.raises(InvalidConfig, match=r"(?s)redis://host:6379/0.*memory://"):
            make()
    with pytest.raises(InvalidConfig, match="REDIS_URL is not set"):
        connect("")


def test_memory_url_is_the_one_embedded_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    first, second = connect("memory://"), connect_async("memory://")
    assert isinstance(first, fakeredis.FakeRedis)
    assert first.connection_pool.connection_kwargs["server"] is bus_module.fake_server()
    assert second.connection_pool.connection_kwargs["server"] is bus_module.fake_server()
    assert (bus_module.backend(first), bus_module.backend(second)) == ("memory", "memory")
    assert bus_module.backend(connect("redis://127.0.0.1:1/0")) == "redis"  # no connection made


def test_memory_url_without_fakeredis_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "fakeredis", None)  # import fakeredis raises ImportError
    for make in (connect, connect_async):
        with pytest.raises(InvalidConfig, match=r"pip install 'sidestream\[memory\]'"):
            make("memory://")


# --- async --------------------------------------------------------------------------------------


async def test_async_bus_publish_history_latest(abus: AsyncBus) -> None:
    ids = [await abus.publish("c", str(n), event="n") for n in range(3)]
    assert await abus.history("c", after_id=ids[0]) == [Event(str(n), "n", ids[n]) for n in (1, 2)]
    assert await abus.latest_id("c") == ids[-1]
    assert await abus.wait("c", after_id=ids[-1], timeout=0.1) == []


async def test_async_wait_wakes_on_publish_and_holds_no_loop(abus: AsyncBus) -> None:
    last = await abus.latest_id("c")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async def publish_later() -> str:
        await asyncio.sleep(0.3)
        return await abus.publish("c", "news")

    tick_task = asyncio.create_task(ticker())
    waited, published = await asyncio.gather(
        abus.wait("c", after_id=last, timeout=10), publish_later()
    )
    tick_task.cancel()
    assert waited == [Event("news", None, published)]
    assert ticks >= 5  # the event loop kept running while the wait blocked on Redis


async def test_async_wait_sends_one_xread(abus: AsyncBus, monkeypatch: pytest.MonkeyPatch) -> None:
    last = await abus.publish("c", "old")
    sent = count_commands(monkeypatch, abus.redis)
    assert await abus.wait("c", after_id=last, timeout=0.3) == []
    assert [command[:5] for command in sent] == [
        ("XREVRANGE", abus.stream_key("c"), "+", "-", "COUNT"),
        ("XREAD", "COUNT", 100, "BLOCK", 300),
    ]


async def test_async_gap_and_validation(backend_url: str, key_prefix: str) -> None:
    client = connect_async(backend_url)
    small = AsyncBus(client, prefix=key_prefix, maxlen=1, max_data_bytes=4)
    ids = [await small.publish("c", str(n)) for n in range(250)]
    with pytest.raises(HistoryGap) as caught:
        await small.history("c", after_id=ids[0])
    assert caught.value.latest_id == ids[-1]
    with pytest.raises(PayloadTooLarge):
        await small.publish("c", "12345")
    with pytest.raises(InvalidChannel):
        await small.wait("bad name", after_id="0", timeout=0)
    with pytest.raises(InvalidCursor):
        await small.history("c", after_id="nope")
    await client.aclose()


async def test_async_publish_live(abus: AsyncBus) -> None:
    pubsub = abus.redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(abus.live_channel("c"))
    published = await abus.publish("c", "stored")
    assert await abus.publish_live("c", "not stored") == 1
    got: list[Event] = []
    deadline = time.monotonic() + 5
    while len(got) < 2 and time.monotonic() < deadline:
        message = await pubsub.get_message(timeout=0.1)
        if message is not None:
            got.append(decode_live(message["data"]))
    await pubsub.aclose()
    assert got == [Event("stored", None, published), Event("not stored", None, None)]


async def test_sync_and_async_share_state(backend_url: str, key_prefix: str) -> None:
    sync_bus = Bus(connect(backend_url), prefix=key_prefix)
    client = connect_async(backend_url)
    async_bus = AsyncBus(client, prefix=key_prefix)
    last = await async_bus.latest_id("c")
    thread = later(0.2, lambda: sync_bus.publish("c", "from a WSGI thread"))
    events = await async_bus.wait("c", after_id=last, timeout=10)
    thread.join()
    assert [e.data for e in events] == ["from a WSGI thread"]
    await client.aclose()


# --- entries and cursors from outside the bus (issue 11, defects 2, 3 and 5) ---------------------


def test_a_lone_surrogate_is_the_bus_own_invalid_event(bus: Bus) -> None:
    with pytest.raises(InvalidEvent, match="lone surrogate"):
        bus.publish("c", "half a pair: \ud800")
    with pytest.raises(InvalidEvent, match="lone surrogate"):
        bus.publish_live("c", "x", event="t\udfff")
    assert bus.latest_id("c") == "0-0"  # nothing was written


def test_entries_another_producer_wrote_badly_are_skipped_and_counted(
    bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    key = bus.stream_key("c")
    good = bus.publish("c", "good")
    bus.redis.xadd(key, {"data": "lf in type", "event": "a\nb"})
    bus.redis.xadd(key, {"data": b"\xff\xfe not utf-8"})
    last = bus.publish("c", "also good")
    assert [e.data for e in bus.history("c")] == ["good", "also good"]
    assert [e.data for e in bus.history("c", after_id=good)] == ["also good"]
    assert [e.data for e in bus.wait("c", after_id=good, timeout=1)] == ["also good"]
    assert bus.invalid_entries == 6
    assert sum("did not write" in r.getMessage() for r in caplog.records) == 6
    # `limit` counts the events returned, not the entries skipped on the way.
    assert [e.id for e in bus.history("c", limit=2)] == [good, last]


def test_a_wait_after_only_bad_entries_keeps_waiting(bus: Bus) -> None:
    first = bus.publish("c", "first")
    bus.redis.xadd(bus.stream_key("c"), {"data": "x", "event": "bad\r"})
    assert bus.wait("c", after_id=first, timeout=0.3) == []
    assert bus.invalid_entries >= 1


@pytest.mark.parametrize("cursor", ["99999999999999-0", f"{2**64 - 1}-{2**64 - 1}"])
def test_a_cursor_ahead_of_the_stream_raises_cursor_ahead(bus: Bus, cursor: str) -> None:
    latest = bus.publish("c", "only")
    for read in (
        lambda: bus.history("c", after_id=cursor),
        lambda: bus.wait("c", after_id=cursor, timeout=5),
    ):
        with pytest.raises(CursorAhead, match="ahead of the stream") as caught:
            read()
        assert (caught.value.latest_id, caught.value.reason) == (latest, "cursor-ahead")
        assert isinstance(caught.value, HistoryGap)  # handled wherever a gap is


def test_a_cursor_from_before_redis_was_emptied_raises_cursor_ahead(bus: Bus) -> None:
    old = bus.publish("c", "gone")
    bus.redis.delete(bus.stream_key("c"))
    with pytest.raises(CursorAhead) as caught:
        bus.wait("c", after_id=old, timeout=5)
    assert caught.value.latest_id == "0-0"
    assert bus.history("c", after_id="0") == []  # "from the start" of an empty stream is fine


def test_a_foreign_entry_right_after_the_cursor_is_not_taken_for_a_gap(bus: Bus) -> None:
    # Another producer's entries carry whatever `prev` they like (here: "the stream restarted");
    # only the bus's own entries say what they follow.
    cursor = bus.publish("c", "seen")
    key = bus.stream_key("c")
    bus.redis.xadd(key, {"data": "x", "event": "a\nb", "prev": "0-0"})
    bus.redis.xadd(key, {"nothing": "no data field", "prev": "0-0"})
    after = bus.publish("c", "after the junk")
    assert [e.id for e in bus.history("c", after_id=cursor)] == [after]
    assert [e.id for e in bus.wait("c", after_id=cursor, timeout=1)] == [after]
    assert bus.invalid_entries == 4


@pytest.mark.parametrize("reserved", ["close", "reset"])
def test_the_services_own_event_types_are_refused(bus: Bus, reserved: str) -> None:
    # A stream's client acts on `close` and `reset` as the service's word: nobody else's.
    for publish in (bus.publish, bus.publish_live):
        with pytest.raises(InvalidEvent, match=f"'{reserved}' is reserved"):
            publish("c", "{}", event=reserved)
    assert bus.latest_id("c") == "0-0"
