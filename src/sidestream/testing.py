"""Helpers for your own tests: serve an app on a loopback port, the way a browser would reach it.

```python
import urllib.request

import flask

from sidestream.testing import serve_wsgi

app = flask.Flask(__name__)
app.get("/hello")(lambda: "hi")

with serve_wsgi(app) as base_url, urllib.request.urlopen(f"{base_url}/hello") as response:
    print(response.read())
    #> b'hi'
```
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication

    import httpx

    from sidestream.sse import Event

__all__ = [
    "StreamCapture",
    "StreamReader",
    "free_port",
    "read_events",
    "read_events_async",
    "serve_asgi",
    "serve_gunicorn",
    "serve_uvicorn",
    "serve_wsgi",
    "stop_process",
    "wait_for_http",
    "wait_until",
    "wait_until_async",
]


@contextmanager
def serve_wsgi(app: WSGIApplication, host: str = "127.0.0.1", *, port: int = 0) -> Iterator[str]:
    """Serve a WSGI app (Flask, ...) in a background thread for the duration of a `with` block.

    Uses Werkzeug's threaded server: one daemon thread per request, so long polls do not block
    each other, and one still waiting does not hold up the end of the block. The port is chosen
    by the OS unless `port` names one.

    Args:
        app: The WSGI application.
        host: The address to listen on; keep the loopback default in tests.
        port: A port chosen beforehand (with [`free_port`][sidestream.testing.free_port]), for
            two servers that must know each other's URL before either starts; 0: the OS picks.

    Yields:
        The base URL, like `http://127.0.0.1:54321` (no trailing slash).
    """
    from werkzeug.serving import make_server

    server = make_server(host, port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="serve_wsgi", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def serve_asgi(
    app: Any,
    host: str = "127.0.0.1",
    *,
    port: int = 0,
    graceful_timeout: int = 2,
    **options: Any,
) -> Iterator[str]:
    """Serve an ASGI app (the stream service, ...) with uvicorn in a background thread.

    The app runs on the thread's own event loop, with its lifespan: give it Redis clients of
    its own (a client made on the test's loop must not be used on the server's). Leaving the
    block stops the server: an app with a `begin_drain()` (the stream service) first ends its
    streams with a last `retry:`; other streams still open are cut after `graceful_timeout`
    seconds.

    Args:
        app: The ASGI application.
        host: The address to listen on; keep the loopback default in tests.
        port: A port chosen beforehand, as for [`serve_wsgi`][sidestream.testing.serve_wsgi];
            0 (the default): the OS picks one.
        graceful_timeout: uvicorn's `timeout_graceful_shutdown`: without one, uvicorn waits
            for every open stream to end by itself, which an event stream never does.
        **options: More `uvicorn.Config` options.

    Yields:
        The base URL, like `http://127.0.0.1:54321` (no trailing slash).
    """
    import uvicorn

    settings: dict[str, Any] = {"log_level": "warning", "access_log": False, "lifespan": "on"}
    settings.update(options)
    config = uvicorn.Config(
        app, host=host, port=port, timeout_graceful_shutdown=graceful_timeout, **settings
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="serve_asgi", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start; see its log output above")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{port}"
    finally:
        # An event stream ends only when its client or the app ends it. An app that can drain
        # (the stream service) closes each with a last `retry:`, as it does on SIGTERM.
        begin_drain = getattr(app, "begin_drain", None)
        if callable(begin_drain):
            server.servers[0].get_loop().call_soon_threadsafe(begin_drain)
        server.should_exit = True
        thread.join(timeout=graceful_timeout + 10)


@contextmanager
def serve_gunicorn(
    app: str,
    *options: str,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    ready_path: str = "/",
    timeout: float = 30,
) -> Iterator[str]:
    """Run real gunicorn (`python -m gunicorn`) on a free loopback port for a `with` block.

    For what only the production server shows: sync workers that a stream occupies, 103 Early
    Hints, worker timeouts. Ready when `ready_path` gets any HTTP answer; stopped with SIGTERM.

    Args:
        app: The WSGI app as gunicorn names it, like `"app:app"`.
        *options: More gunicorn options (`"--workers", "2"`); `--bind` is chosen here.
        cwd: The directory gunicorn runs in (where `app`'s module is found).
        env: Extra environment variables for gunicorn, on top of this process's.
        ready_path: A path to poll until the server answers.
        timeout: Seconds to wait for the server to answer.

    Yields:
        The base URL, like `http://127.0.0.1:54321`.

    Raises:
        RuntimeError: gunicorn exited or did not answer in time (its log is in the message).
    """
    port = free_port()  # gunicorn binds it right after
    command = ["-m", "gunicorn", "--bind", f"127.0.0.1:{port}", *options, app]
    with _serve_process("gunicorn", command, port, cwd, env, ready_path, timeout) as base:
        yield base


@contextmanager
def serve_uvicorn(
    app: str,
    *options: str,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    ready_path: str = "/",
    timeout: float = 30,
) -> Iterator[str]:
    """Run real uvicorn (`python -m uvicorn`) in a process of its own on a free loopback port.

    For what one process cannot show: two service processes that share nothing but Redis (an
    embedded `memory://` server is *not* shared between them), a SIGTERM drain. For an ASGI app
    inside the test's own process, [`serve_asgi`][sidestream.testing.serve_asgi] is lighter.
    Stopped with SIGTERM: pass `"--timeout-graceful-shutdown", "1"` if streams may still be open.

    Args:
        app: The ASGI app as uvicorn names it, like `"service:app"`.
        *options: More uvicorn options (`"--workers", "2"`); `--host` and `--port` are chosen.
        cwd: The directory uvicorn runs in (where `app`'s module is found).
        env: Extra environment variables for uvicorn (`REDIS_URL` ...), on top of this process's.
        ready_path: A path to poll until the server answers.
        timeout: Seconds to wait for the server to answer.

    Yields:
        The base URL, like `http://127.0.0.1:54321`.

    Raises:
        RuntimeError: uvicorn exited or did not answer in time (its log is in the message).
    """
    port = free_port()
    command = ["-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), *options, app]
    with _serve_process("uvicorn", command, port, cwd, env, ready_path, timeout) as base:
        yield base


def wait_for_http(
    url: str,
    proc: subprocess.Popen[Any],
    timeout: float,
    *,
    ready: Callable[[httpx.Response], bool] = lambda response: True,
) -> None:
    """Poll `GET url` (every 0.1 s) until a server process a test started answers it.

    Args:
        url: What to ask, like `http://127.0.0.1:54321/healthz`.
        proc: The server's process: if it exits first, waiting is over.
        timeout: Seconds to wait in all.
        ready: Which answer means ready; by default any HTTP answer at all.

    Raises:
        RuntimeError: `proc` exited, or `timeout` seconds passed, before a ready answer.
    """
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready(httpx.get(url, timeout=2)):
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"the process exited (code {proc.returncode}) before {url} answered")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no ready answer from {url} in {timeout} s")
        time.sleep(0.1)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 30) -> None:
    """Stop a server process a test started: SIGTERM (a graceful drain), then SIGKILL if it
    has not exited within `timeout` seconds; returns once it has been reaped."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    """A loopback TCP port that was free a moment ago, for a server a test starts itself."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02) -> None:
    """Poll `check()` until it is true; `AssertionError` if `timeout` seconds pass first.

    For what a test can only observe from outside (a count in Redis, a file, another process),
    where there is no event to wait on.
    """
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"condition not reached in {timeout} s"
        time.sleep(interval)


async def wait_until_async(
    check: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0, interval: float = 0.02
) -> None:
    """[`wait_until`][sidestream.testing.wait_until] for async tests: sleeps without blocking the
    event loop, and `check` may be a coroutine function."""
    import asyncio
    import inspect

    deadline = time.monotonic() + timeout
    while True:
        done = check()
        if inspect.isawaitable(done):
            done = await done
        if done:
            return
        assert time.monotonic() < deadline, f"condition not reached in {timeout} s"
        await asyncio.sleep(interval)


@contextmanager
def _serve_process(
    name: str,
    arguments: list[str],
    port: int,
    cwd: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None,
    ready_path: str,
    timeout: float,
) -> Iterator[str]:
    """Run `python <arguments>` until the block ends; ready when `ready_path` answers."""
    base = f"http://127.0.0.1:{port}"
    # The server logs to a file: a pipe that nobody reads could fill up and block it.
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, *arguments],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            try:
                wait_for_http(f"{base}{ready_path}", proc, timeout)
            except RuntimeError:
                proc.kill()
                proc.wait()
                log.seek(0)
                output = log.read().decode(errors="replace")
                raise RuntimeError(f"{name} did not answer on {base}:\n{output}") from None
            yield base
        finally:
            stop_process(proc)


@dataclass
class StreamCapture:
    """What [`read_events`][sidestream.testing.read_events] saw of one event stream.

    Attributes:
        status: The HTTP status.
        headers: The response headers (lower-case names).
        events: The events, in order, as a browser would dispatch them.
        last_event_id: The id a browser would send back as `Last-Event-ID`.
        retry: The reconnection delay (ms) the stream asked for, if any.
        ended: Whether the server ended the stream (rather than the reader stopping).
        body: The raw bytes of a response that was not a stream (an error's JSON).
    """

    status: int
    headers: dict[str, str]
    events: list[Event] = field(default_factory=list)
    last_event_id: str = ""
    retry: int | None = None
    ended: bool = False
    body: bytes = b""


class StreamReader:
    r"""An open event stream read step by step: see it open, do something, then read what came.

    For tests that must act *while* a stream is open (publish, restart a server, expire a token),
    which [`read_events`][sidestream.testing.read_events] cannot, as it opens and closes the stream
    itself:

    ```python
    import httpx

    from sidestream.access import allow_everyone
    from sidestream.bus import AsyncBus, Bus, connect, connect_async
    from sidestream.service import create_app
    from sidestream.testing import StreamReader, serve_asgi

    service_bus = AsyncBus(connect_async("memory://"), prefix="reader-doc:")
    app = create_app(service_bus, authorize=allow_everyone)  # public: a warning says so
    bus = Bus(connect("memory://"), prefix="reader-doc:")
    with (
        serve_asgi(app) as url,
        httpx.stream("GET", f"{url}/events?channel=news", timeout=5) as response,
    ):
        stream = StreamReader(response)
        stream.read_until(lambda: b"\n\n" in stream.raw)  # the first block: it is open
        bus.publish("news", "hello")
        print(stream.wait_events(1)[0].data)
        #> hello
    ```

    Attributes:
        response: The streaming `httpx.Response`.
        raw: Every byte read so far.
        events: Every event parsed so far, as a browser would dispatch them.
        parser: The [`EventStreamParser`][sidestream.sse.EventStreamParser]: its
            `last_event_id` and `retry` are what a browser would reconnect with.
    """

    def __init__(self, response: httpx.Response) -> None:
        from sidestream.sse import EventStreamParser

        self.response = response
        self.raw = b""
        self.events: list[Event] = []
        self._chunks = response.iter_raw()
        self.parser = EventStreamParser()

    def _read_chunk(self) -> bytes:
        chunk = next(self._chunks)  # the client's read timeout raises if nothing comes
        self.raw += chunk
        self.events += self.parser.feed(chunk)
        return chunk

    def read_until(self, done: Callable[[], bool]) -> None:
        """Read until `done()` is true; raises the client's timeout error if the stream stalls,
        and `StopIteration` if the server ends the stream first."""
        while not done():
            self._read_chunk()

    def wait_events(self, count: int) -> list[Event]:
        """Read until at least `count` events have arrived; returns all events read so far."""
        self.read_until(lambda: len(self.events) >= count)
        return self.events

    def follow(self) -> Iterator[Event]:
        """Every event, from those already read on, until the server ends the stream."""
        seen = 0
        while True:
            yield from self.events[seen:]
            seen = len(self.events)
            try:
                self._read_chunk()
            except StopIteration:
                return


def read_events(
    url: str,
    *,
    count: int,
    timeout: float = 5.0,
    headers: Mapping[str, str] | None = None,
    until: Callable[[Event], bool] | None = None,
) -> StreamCapture:
    """GET an event stream over HTTP and parse it as a browser would (uses httpx).

    Reads until `count` events arrived, `until(event)` is true, the server ends the stream, or
    `timeout` seconds passed, whichever comes first; then closes the connection.

    Args:
        url: The stream's URL.
        count: How many events to wait for.
        timeout: Seconds to read at most.
        headers: Request headers (`Last-Event-ID`, `Authorization`, `Origin` ...).
        until: Stop after the first event for which this returns true.
    """
    import httpx

    from sidestream.sse import EventStreamParser

    parser = EventStreamParser()
    deadline = time.monotonic() + timeout
    with (
        httpx.Client(timeout=httpx.Timeout(timeout)) as client,
        client.stream("GET", url, headers=dict(headers or {})) as response,
    ):
        capture = StreamCapture(response.status_code, dict(response.headers))
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            capture.body = response.read()
            return capture
        chunks = response.iter_raw()
        while len(capture.events) < count and time.monotonic() < deadline:
            try:
                chunk = next(chunks)
            except StopIteration:
                capture.ended = True
                break
            except httpx.ReadTimeout:
                break  # nothing at all for `timeout` seconds (not even a heartbeat)
            for event in parser.feed(chunk):
                capture.events.append(event)
                if until is not None and until(event):
                    count = len(capture.events)
        capture.last_event_id, capture.retry = parser.last_event_id, parser.retry
        return capture


async def read_events_async(
    read: Callable[[], Awaitable[bytes]], *, count: int, timeout: float = 5.0
) -> list[Event]:
    """Parse events from any async byte source until `count` arrived or `timeout` passed.

    For example `falcon.testing`'s streamed result: `read_events_async(result.stream.read,
    count=2)`. Raises `TimeoutError` (with what arrived so far) when the events did not come.
    """
    import asyncio

    from sidestream.sse import EventStreamParser

    parser = EventStreamParser()
    events: list[Event] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(events) < count:
        left = deadline - loop.time()
        if left <= 0:
            raise TimeoutError(f"got {len(events)} of {count} events in {timeout}s: {events}")
        try:
            chunk = await asyncio.wait_for(read(), left)
        except TimeoutError:
            continue
        if not chunk:
            await asyncio.sleep(0.005)
            continue
        events.extend(parser.feed(chunk))
    return events
