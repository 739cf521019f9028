"""Reading a pub/sub connection in bulk: every reply in one socket read, parsed by hiredis, handed
over without a task wake-up or a timer per message.

redis-py reads pub/sub one message per `get_message()`: a coroutine chain, a timeout context and
a task wake-up for each. Under the one-channel-per-user pattern (one stream per channel, a
message per event) that path costs more than the delivery itself. A
[`BulkReader`][sidestream.bulk_reader.BulkReader] takes over the socket of a connection that
redis-py has already opened (TLS, `AUTH`, `HELLO` and client name done its way): each read is fed
to hiredis's parser and every complete reply goes to `handle` at once. When `handle` returns an
awaitable (the hub checking an id against the Stream, or replaying a newly confirmed channel),
reading pauses until it is done, so replies are still handled one after the other, in order.

Commands (`SUBSCRIBE`, `UNSUBSCRIBE`, `PING`) are written with redis-py's own command packer.
The connection's original asyncio protocol still hears of the connection closing and of write
flow control, so redis-py closes it as usual.

[`attach`][sidestream.bulk_reader.attach] says why it cannot take over (no hiredis, a
connection without a socket such as fakeredis's, a redis-py whose connection no longer looks
as expected); the listener then reads through redis-py and logs which way it reads.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Final

from redis.credentials import StreamingCredentialProvider
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

hiredis: Any
try:
    import hiredis
except ImportError:  # pragma: no cover - the falcon extra installs it
    hiredis = None

__all__ = ["BulkReader", "attach"]

Handle = Callable[[Any], Awaitable[None] | None]

YIELD_EVERY: Final = 64
"""Replies handled in one go before the reader lets the event loop run other work."""

_NOT_YET: Final = object()  # hiredis's "no complete reply yet" (False is a RESP3 reply)


class BulkReader(asyncio.Protocol):
    """The protocol on a taken-over pub/sub socket.

    Attributes:
        ended: Resolves to the exception that ended the connection (closed, a protocol error,
            or whatever `handle` raised); never to `None`.
        last_heard: Loop time of the last bytes read, or of the end of the last pause.
    """

    def __init__(self, connection: Any, transport: Any, handle: Handle) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._connection = connection
        self._transport = transport
        self._original = transport.get_protocol()
        self._handle = handle
        self._parser = hiredis.Reader(notEnoughData=_NOT_YET)
        self._blocked = False
        self._follow_up: asyncio.Future[None] | None = None
        self.ended: asyncio.Future[BaseException] = loop.create_future()
        self.last_heard = loop.time()

    def send(self, *args: Any) -> None:
        """Write one command (no reply is awaited: it arrives through `handle`)."""
        if not self.ended.done():
            self._transport.writelines(self._connection.pack_command(*args))

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.last_heard = self._loop.time()
        self._parser.feed(data)
        if not self._blocked:
            self._pump()

    def eof_received(self) -> bool | None:
        self._end(RedisConnectionError("Redis closed the pub/sub connection"))
        return bool(self._original.eof_received())

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(exc or RedisConnectionError("the pub/sub connection closed"))
        self._original.connection_lost(exc)

    def pause_writing(self) -> None:
        self._original.pause_writing()

    def resume_writing(self) -> None:
        self._original.resume_writing()

    # -- handing replies over ------------------------------------------------------------------

    def _pump(self) -> None:
        parser, handle, ended = self._parser, self._handle, self.ended
        handled = 0
        while not ended.done():
            try:
                reply = parser.gets()
            except hiredis.ProtocolError as exc:
                self._end(RedisConnectionError(f"unreadable reply from Redis: {exc}"))
                return
            if reply is _NOT_YET:
                return
            if isinstance(reply, hiredis.ReplyError):  # a refused command ends the session
                self._end(ResponseError(str(reply)))
                return
            try:
                follow_up = handle(reply)
            except Exception as exc:  # the listener decides: a Redis error or a bug
                self._end(exc)
                return
            handled += 1
            if follow_up is not None:
                self._block()
                task = self._follow_up = asyncio.ensure_future(follow_up)
                task.add_done_callback(self._followed_up)
                return
            if handled >= YIELD_EVERY and parser.has_data():
                self._block()
                self._loop.call_soon(self._unblock)
                return

    def _block(self) -> None:
        self._blocked = True
        self._transport.pause_reading()

    @property
    def busy(self) -> bool:
        """Whether reading is paused on a follow-up (waiting on it is not silence from Redis)."""
        return self._blocked

    def _unblock(self) -> None:
        if self.ended.done():
            return
        self.last_heard = self._loop.time()  # replies may have waited behind the follow-up
        self._blocked = False
        self._transport.resume_reading()
        self._pump()

    async def settle(self) -> None:
        """Wait until the follow-up under way, if any, is over (`_end` cancelled it): whoever
        hears of the lost connection next must hear of it after that follow-up, not before."""
        task = self._follow_up
        if task is not None and not task.done():
            with contextlib.suppress(BaseException):
                await asyncio.shield(task)

    def _followed_up(self, task: asyncio.Future[None]) -> None:
        self._follow_up = None
        if task.cancelled():
            self._end(RedisConnectionError("a follow-up of a pub/sub reply was cancelled"))
            return
        exc = task.exception()
        if exc is not None:
            self._end(exc)
            return
        self._unblock()

    def _end(self, exc: BaseException) -> None:
        if not self.ended.done():
            self.ended.set_result(exc)
            self._transport.close()
            if self._follow_up is not None:
                # A replay or a start position read for a session that is over: the next
                # session does it again (the listener waits for this one first, see `settle`).
                self._follow_up.cancel()


def attach(connection: Any, handle: Handle) -> tuple[BulkReader | None, str]:
    """Take over `connection`'s socket (a connected redis-py asyncio connection) if possible.

    Returns the reader, or `None` and why not (for the listener's log line).
    """
    if hiredis is None:
        return None, "hiredis is not installed"
    writer = getattr(connection, "_writer", None)  # redis-py's asyncio.StreamWriter
    transport = getattr(writer, "transport", None)
    needed = ("get_protocol", "set_protocol", "pause_reading", "resume_reading", "writelines")
    if transport is None or not all(hasattr(transport, name) for name in needed):
        return None, "the connection has no socket transport (fakeredis, or another redis-py)"
    if not hasattr(connection, "pack_command"):
        return None, "the connection cannot pack commands"
    if isinstance(getattr(connection, "credential_provider", None), StreamingCredentialProvider):
        # redis-py re-authenticates such connections itself, reading the reply on its side
        return None, "a streaming credential provider re-authenticates through redis-py"
    reader = BulkReader(connection, transport, handle)
    transport.set_protocol(reader)
    return reader, ""
