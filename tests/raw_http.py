"""Test helpers for sidestream.streamserver: the server in-process, and an HTTP/1.1 client on a
raw asyncio socket that sends exactly the bytes a test gives it and reads responses strictly
(a head, then a body framed by Content-Length, by chunks, or by the close).

Every read has a timeout (`TIMEOUT` unless told), so a server that stops answering fails the
test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from sidestream.sse import Event, EventStreamParser
from sidestream.streamserver import ServerSettings, serve

TIMEOUT = 5.0


class Clients:
    """Clients a test opened, all closed at its end (`close_all`), whatever the test did."""

    def __init__(self) -> None:
        self.opened: list[RawClient] = []

    async def connect(self, port: int, **options: Any) -> RawClient:
        client = await RawClient.connect(port, **options)
        self.opened.append(client)
        return client

    async def close_all(self) -> None:
        for client in self.opened:
            client.close()
        await asyncio.sleep(0)  # the transports close on the next turn of the loop


@dataclass
class Running:
    """A server started by [`running`][]: its port, and the `stop` that shuts it down."""

    port: int
    stop: asyncio.Event
    task: asyncio.Task[None]
    clients: Clients = field(default_factory=Clients)

    async def connect(self, **options: Any) -> RawClient:
        """A new client connection (closed when `running` ends, if the test did not)."""
        return await self.clients.connect(self.port, **options)


@contextlib.asynccontextmanager
async def running(app: Any, **settings: Any) -> AsyncIterator[Running]:
    """Serve `app` on a free loopback port until the block ends; then stop it and wait (at
    most 10 s) for `serve` to return. Fails at once if the server ends before listening."""
    stop = asyncio.Event()
    listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve(
            app,
            ServerSettings(port=0, **settings),
            stop=stop,
            on_listening=listening.set_result,
        )
    )
    done, _ = await asyncio.wait({listening, task}, timeout=10, return_when="FIRST_COMPLETED")
    if listening not in done:
        stop.set()
        if task in done:
            task.result()  # raises what stopped it
        task.cancel()
        raise AssertionError("the server did not listen within 10 s")
    server = Running(listening.result(), stop, task)
    try:
        yield server
    finally:
        stop.set()
        try:
            async with asyncio.timeout(10):
                await task
        finally:
            await server.clients.close_all()


@dataclass
class Response:
    """One response as it came: status, headers (lower-case names, in order), body."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n == name]
        assert len(values) <= 1, f"{name} sent {len(values)} times: {self.headers}"
        return values[0] if values else None

    def json(self) -> Any:
        assert self.header("content-type") == "application/json", self.headers
        return json.loads(self.body)


class RawClient:
    """One TCP connection to the server: raw bytes out, strictly parsed responses in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, *, receive_buffer: int | None = None) -> RawClient:
        """Connect; `receive_buffer` sets SO_RCVBUF before connecting (a small window)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(
                asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port)), TIMEOUT
            )
        except BaseException:
            sock.close()
            raise
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        return cls(reader, writer)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    def request(
        self,
        target: str = "/",
        *,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        version: str = "1.1",
    ) -> None:
        """Send one well-formed request (a Host, and a Content-Length with a body)."""
        lines = [f"{method} {target} HTTP/{version}", "Host: test"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if body:
            lines.append(f"Content-Length: {len(body)}")
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    async def _read(self, read: Any, timeout: float) -> Any:
        async with asyncio.timeout(timeout):
            return await read

    async def head(self, timeout: float = TIMEOUT) -> Response:
        """The next response's status line and headers."""
        raw = await self._read(self.reader.readuntil(b"\r\n\r\n"), timeout)
        status_line, *lines = raw[:-4].decode("latin-1").split("\r\n")
        version, status, reason = [*status_line.split(" ", 2), ""][:3]
        assert version == "HTTP/1.1", status_line
        headers = []
        for line in lines:
            name, _, value = line.partition(":")
            assert name and name == name.strip(), f"bad header line {line!r}"
            headers.append((name.lower(), value.strip()))
        return Response(int(status), reason, headers)

    async def response(self, *, method: str = "GET", timeout: float = TIMEOUT) -> Response:
        """The next whole response (skipping none: a 1xx is returned as it is)."""
        response = await self.head(timeout)
        if method == "HEAD" or response.status < 200 or response.status in (204, 304):
            return response
        length = response.header("content-length")
        if response.header("transfer-encoding") == "chunked":
            assert length is None, "both a length and chunks"
            chunks = []
            while chunk := await self.chunk(timeout):
                chunks.append(chunk)
            response.body = b"".join(chunks)
        elif length is not None:
            response.body = await self._read(self.reader.readexactly(int(length)), timeout)
        else:  # delimited by the close
            response.body = await self._read(self.reader.read(), timeout)
        return response

    async def chunk(self, timeout: float = TIMEOUT) -> bytes:
        """The next chunk of a chunked body (RFC 9112, 7.1); `b""` for the last one."""
        size_line = await self._read(self.reader.readuntil(b"\r\n"), timeout)
        size = int(size_line[:-2], 16)
        data = await self._read(self.reader.readexactly(size + 2), timeout)
        assert data[-2:] == b"\r\n", f"chunk of {size} not followed by CRLF: {data[-10:]!r}"
        return data[:-2]

    async def closed(self, timeout: float = TIMEOUT) -> bool:
        """True when the server closed the connection cleanly (EOF, not a reset) with nothing
        more sent; an AssertionError shows the bytes when it sent some; TimeoutError if the
        connection is still open."""
        rest = await self._read(self.reader.read(65536), timeout)
        assert rest == b"", f"expected the close, got {rest[:300]!r}"
        return True

    async def rest(self, timeout: float = TIMEOUT) -> bytes:
        """Everything until the server closes the connection."""
        return bytes(await self._read(self.reader.read(), timeout))

    def close(self) -> None:
        self.writer.close()

    def reset(self) -> None:
        """Drop the connection with a TCP RST (SO_LINGER 0), as a crashed client would."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


@dataclass
class EventStream:
    """An open `text/event-stream` response on a `RawClient`, parsed as a browser would.

    HTTP/1.1 bodies are read chunk by chunk (each chunk checked); HTTP/1.0 bodies are read as
    they come, until the close.
    """

    client: RawClient
    response: Response
    parser: EventStreamParser = field(default_factory=EventStreamParser)
    events: list[Event] = field(default_factory=list)
    raw: bytes = b""
    ended: bool = False

    @classmethod
    async def open(
        cls,
        client: RawClient,
        target: str,
        *,
        version: str = "1.1",
        headers: dict[str, str] | None = None,
    ) -> EventStream:
        """Request `target`, check the head of an event stream, and read its first block
        (the `retry:` and `id:` lines), so the stream is known to be open."""
        client.request(target, headers=headers, version=version)
        response = await client.head()
        assert response.status == 200, (response, await client.rest())
        assert response.header("content-type") == "text/event-stream"
        chunked = response.header("transfer-encoding") == "chunked"
        assert chunked == (version == "1.1"), response.headers
        stream = cls(client, response)
        await stream.read_until(lambda: b"\n\n" in stream.raw)
        assert stream.parser.retry is not None
        return stream

    @property
    def chunked(self) -> bool:
        return self.response.header("transfer-encoding") == "chunked"

    async def _more(self, timeout: float) -> None:
        assert not self.ended, "the stream has ended"
        if self.chunked:
            data = await self.client.chunk(timeout)
        else:
            data = await self.client._read(self.client.reader.read(65536), timeout)
        if not data:
            self.ended = True
            return
        self.raw += data
        self.events += self.parser.feed(data)

    async def read_until(self, done: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        """Read until `done()`; TimeoutError after `timeout` seconds, AssertionError if the
        stream ends first."""
        async with asyncio.timeout(timeout):
            while not done():
                await self._more(timeout)

    async def wait_events(self, count: int, timeout: float = TIMEOUT) -> list[Event]:
        """Read until `count` events in all have arrived; returns them all."""
        await self.read_until(lambda: len(self.events) >= count, timeout)
        return self.events

    async def until_end(self, timeout: float = TIMEOUT) -> list[Event]:
        """Read until the server ends the stream (the last chunk, or the close); returns every
        event. On HTTP/1.1 the connection must then close too."""
        async with asyncio.timeout(timeout):
            while not self.ended:
                await self._more(timeout)
        if self.chunked:
            assert await self.client.closed(timeout)
        return self.events
