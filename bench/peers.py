"""The stream service beside its peers: one harness, one run, the same load for every server.

Not a test. Everything runs on loopback against a private redis-server that this script starts
on a free port (the shared Redis is never touched). Writes bench/results/peers.json, which the
Benchmarks page renders as it is.

    .venv/bin/python bench/peers.py                       # every peer, every size (~15 min)
    .venv/bin/python bench/peers.py --peers sidestream --sizes 1000 --output /tmp/p.json
    .venv/bin/python bench/peers.py --profile             # py-spy on the service -> profile.json
    .venv/bin/python bench/peers.py --peers sidestream --sizes "" --channels 19500 \
        --channel-rate 19500 --seconds 10 --no-floor --output bench/results/peers_scale.json

`--profile` needs py-spy (`.venv/bin/pip install --group bench`, from pyproject.toml). The
last command is the scale run: one stream per channel on as many channels as one process can
open here (the machine's open-file limit is 20,000 per process, for the server and for this
script alike).

The peers: sidestream's service (with and without hiredis), the naive design (one Redis
subscription per client), Nchan (Debian's libnginx-mod-nchan, memory storage), Pushpin
(Debian's package, its stock `message_rate` and raised), sse-starlette with broadcaster on Redis,
and flask-sse under gunicorn (gthread and gevent). The Python peers run from their own venv,
bench/peers/.venv, made from bench/peers/requirements.txt (redis-py 7.4 there: broadcaster 0.3.x
delivers nothing on redis-py 8).

Per peer and size (N streams on one channel, or one stream per channel on N channels):

0. Before each run, wait until the machine's CPU has been at least QUIET idle for a second
   (the previous server may still be winding down: 5,000 threads take a while to go).
1. Start the server (every process it forks counts), open 50 streams and close them (warm-up),
   read the RSS of the whole process tree, open N streams with raw asyncio protocols, wait until
   each is subscribed (its response head, or PUBSUB NUMSUB where the head waits for the first
   event), read the RSS again: the growth over N is the memory per idle stream.
2. Count the Redis connections the server holds (CLIENT LIST, less this script's own).
3. Publish `rate` events per second for `seconds` (one channel), or `channel_rate` events per
   second spread round-robin over the N channels; each event carries its sequence number and
   its publish time.
4. A sample of the streams (`--sampled`) parse every event and time it; the others only count
   `data:` lines. Loss is expected minus received per stream; duplicates come from the sampled
   streams' sequence numbers and from any stream that counted more than it was sent.
5. Server CPU is utime + stime (children included) of every process in the server's tree,
   from /proc, between the first publish and the last delivery (or the deadline); the
   generator's own CPU is getrusage(RUSAGE_SELF) over the same window.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import redis.asyncio
from fanout import Server, installed, machine, percentile, raise_fd_limit
from longpoll_latency import private_redis

from sidestream.bus import AsyncBus
from sidestream.testing import free_port

BENCH = Path(__file__).resolve().parent
PEERS = BENCH / "peers"
VENV = PEERS / ".venv"
RESULTS = BENCH / "results" / "peers.json"
PROFILE = BENCH / "results" / "profile.json"
HARNESS = "bench-harness"  # this script's Redis connections carry this name
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SAMPLE_EVENT = re.compile(rb"data: ?(\d+) (\d+\.\d+)\r?\n")  # sse-starlette ends lines CRLF
DATA = b"data:"
ACCEPT = "Accept: text/event-stream\r\n"  # what EventSource sends; Nchan requires it
NCHAN = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")
STOCK_PUSHPIN = Path("/etc/pushpin/pushpin.conf")
RAISED_MESSAGE_RATE = 1_000_000


# --- measuring: pure functions the tests check --------------------------------------------


def proc_stat(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name (field 3 onwards)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """`root` and every live descendant (by the parent ids in /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                children.setdefault(int(proc_stat(int(entry.name))[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of a process tree. For each live process: the run time of its live threads
    in nanoseconds (`/proc/<pid>/task/*/schedstat`), or, when larger (threads that already
    exited), its utime + stime in clock ticks; plus cutime + cstime (children that already
    exited and were waited for). At 10 ms a tick, the ticks alone were too coarse for a run
    that costs the server a fraction of a second."""
    total = 0.0
    for pid in process_tree(root):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = proc_stat(pid)
            ticks = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
            waited = (int(fields[13]) + int(fields[14])) / CLOCK_TICKS
            threads = 0.0
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    threads += int((task / "schedstat").read_text().split()[0]) / 1e9
            total += max(threads, ticks) + waited
    return total


def tree_rss_bytes(root: int) -> int:
    total = 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def count_events(tail: bytes, data: bytes) -> tuple[int, bytes]:
    """`data:` lines in `data`, with the bytes kept from the previous chunk (`tail`) so a field
    name cut between two reads is counted once; returns the count and the next tail."""
    joined = tail + data
    return joined.count(DATA), joined[-(len(DATA) - 1) :]


def tally(expected: list[int], counts: list[int], sampled_duplicates: int = 0) -> dict[str, int]:
    """Loss and duplicates over all streams: `expected[i]` events were sent to stream i, which
    received `counts[i]` distinct (sampled) or counted (drained) events."""
    received = sum(min(e, c) for e, c in zip(expected, counts, strict=True))
    extra = sum(max(0, c - e) for e, c in zip(expected, counts, strict=True))
    return {
        "expected": sum(expected),
        "received": received,
        "lost": sum(expected) - received,
        "duplicates": extra + sampled_duplicates,
    }


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each number over repeated runs (the first run's other fields). Whole
    numbers take the lower median, a value one of the runs measured, so counts stay counts."""
    if len(runs) == 1:
        return runs[0]
    merged = dict(runs[0])
    for key, first in runs[0].items():
        values = [run.get(key) for run in runs]
        numbers = all(isinstance(v, (int, float)) for v in values)
        if numbers and isinstance(first, (int, float)) and not isinstance(first, bool):
            whole = all(isinstance(v, int) for v in values)
            merged[key] = (statistics.median_low if whole else statistics.median)(values)  # type: ignore[arg-type]
    merged["repeats"] = len(runs)
    return merged


# --- clients ------------------------------------------------------------------------------


class Reader(asyncio.Protocol):
    """One event stream on a raw socket. Sampled readers parse and time every event; the
    others count `data:` lines and nothing more."""

    def __init__(
        self, request: bytes, sampled: bool, latencies: array[float], key: int = 0
    ) -> None:
        self.request = request
        self.key = key  # which of the paths it opened
        self.sampled = sampled
        self.latencies = latencies
        self.seen: set[int] = set()
        self.duplicates = 0
        self.count = 0
        self.tail = b""
        self.buffer = b""
        self.headed = False
        self.head: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self.headed:
            buffer = self.buffer + data
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            self.headed = True
            if not self.head.done():
                self.head.set_result(buffer[:end])
            self.buffer, data = b"", buffer[end + 4 :]
        if not self.sampled:
            found, self.tail = count_events(self.tail, data)
            self.count += found
            return
        now = time.time()
        buffer = self.buffer + data
        cut = buffer.rfind(b"\n")  # complete lines only: a data line matches with its end
        if cut < 0:
            self.buffer = buffer
            return
        for match in SAMPLE_EVENT.finditer(buffer, 0, cut + 1):
            sequence = int(match[1])
            if sequence in self.seen:
                self.duplicates += 1
                continue
            self.seen.add(sequence)
            self.latencies.append(now - float(match[2]))
        self.count = len(self.seen)
        self.buffer = buffer[cut + 1 :]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.head.done():
            self.head.set_exception(ConnectionError("closed before the response head"))


@dataclass
class Crowd:
    port: int
    latencies: array[float] = field(default_factory=lambda: array("d"))
    readers: list[Reader] = field(default_factory=list)

    async def open(self, paths: list[str], sampled: int, wait_head: bool) -> None:
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(100)  # connect in waves: the listen backlog is finite
        every = max(1, len(paths) // max(1, sampled))

        async def one(index: int, path: str) -> None:
            request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{ACCEPT}\r\n".encode()
            is_sampled = index % every == 0 and index // every < sampled
            async with gate:
                _, reader = await loop.create_connection(
                    lambda: Reader(request, is_sampled, self.latencies, index),
                    "127.0.0.1",
                    self.port,
                )
                self.readers.append(reader)
                if wait_head:
                    head = await asyncio.wait_for(reader.head, 60)
                    if b" 200 " not in head.split(b"\r\n", 1)[0]:
                        raise RuntimeError(f"stream refused: {head[:200]!r}")

        await asyncio.gather(*(one(i, path) for i, path in enumerate(paths)))

    def counts(self) -> list[int]:
        return [reader.count for reader in self.readers]

    def close(self) -> None:
        for reader in self.readers:
            if reader.transport is not None:
                reader.transport.close()


class HttpPoster:
    """HTTP/1.1 POSTs on a few raw connections, kept alive unless the server closes them
    (Nchan keeps them; Pushpin's control API answers `Connection: close`)."""

    def __init__(self, port: int, connections: int = 8) -> None:
        self.port = port
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None]
        self.idle = asyncio.Queue()
        for _ in range(connections):
            self.idle.put_nowait(None)  # connected when first used

    async def post(self, path: str, body: bytes, content_type: str = "text/plain") -> int:
        pair = await self.idle.get()
        try:
            reader, writer = pair or await asyncio.open_connection("127.0.0.1", self.port)
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length: *(\d+)", head)
            if length:
                await reader.readexactly(int(length[1]))
            if re.search(rb"(?i)connection: *close", head):
                writer.close()
                pair = None
            else:
                pair = (reader, writer)
        except BaseException:
            pair = None
            raise
        finally:
            self.idle.put_nowait(pair)
        status = int(head.split(b" ", 2)[1])
        if status >= 300:
            raise RuntimeError(f"publish answered {head[:100]!r}")
        return status

    def close(self) -> None:
        while not self.idle.empty():
            pair = self.idle.get_nowait()
            if pair is not None:
                pair[1].close()


# --- the peers ----------------------------------------------------------------------------


def wait_port(port: int, process: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start") from None
            time.sleep(0.05)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the root, then SIGKILL to whatever of its tree is left (a gunicorn worker
    whose threads sit in a stream outlives its master's graceful timeout)."""
    tree = process_tree(process.pid) if process.poll() is None else []
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    for pid in tree[1:]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@dataclass
class Running:
    """A started peer: where clients connect, the root of its process tree, how to publish."""

    port: int
    pid: int
    path: str  # with {channel}
    publish_kind: str  # bus | redis | flask-sse | nchan | pushpin
    head_with_first_event: bool = False
    poster: HttpPoster | None = None


@dataclass(frozen=True)
class Peer:
    name: str
    label: str
    kind: str  # sidestream | naive | bare | broadcaster | flask-sse | nchan | pushpin
    option: str = ""  # gthread/gevent; stock/raised; hiredis on/off
    note: str = ""


PEER_LIST = [
    Peer("sidestream", "sidestream (hiredis)", "sidestream", "hiredis", "one pub/sub connection"),
    Peer(
        "sidestream-streamserver",
        "sidestream (hiredis), its own server",
        "sidestream",
        "streamserver",
        "python -m sidestream.streamserver: a held stream is a connection, not a task",
    ),
    Peer("sidestream-no-hiredis", "sidestream (pure-Python RESP)", "sidestream", "no-hiredis"),
    Peer("naive", "naive: a subscription per client", "naive"),
    Peer("nchan", "Nchan (nginx, memory storage)", "nchan"),
    Peer("pushpin-stock", "Pushpin (stock message_rate)", "pushpin", "stock"),
    Peer("pushpin-raised", "Pushpin (message_rate raised)", "pushpin", "raised"),
    Peer("broadcaster", "sse-starlette + broadcaster", "broadcaster"),
    Peer("flask-sse-gthread", "flask-sse, gunicorn gthread", "flask-sse", "gthread"),
    Peer("flask-sse-gevent", "flask-sse, gunicorn gevent", "flask-sse", "gevent"),
]
FLOORS = [  # the server stack alone, holding idle streams: memory only
    Peer("bare", "floor: uvicorn + Falcon, no Redis", "bare"),
    Peer("bare-asgi", "floor: uvicorn alone (a plain ASGI app), no Redis", "bare", "asgi"),
]
PEER_BY_NAME = {peer.name: peer for peer in [*PEER_LIST, *FLOORS]}


def hiredis_env(option: str, scratch: Path) -> dict[str, str]:
    """PYTHONPATH that forces redis-py's hiredis parser off (a shadow module whose import
    fails) or on (hiredis from the venv, else from --hiredis-dir)."""
    if option == "no-hiredis":
        shadow = scratch / "no-hiredis"
        shadow.mkdir(exist_ok=True)
        (shadow / "hiredis.py").write_text(
            "raise ImportError('hiredis switched off by the bench')\n"
        )
        return {"PYTHONPATH": str(shadow)}
    if option in ("hiredis", "streamserver") and not installed("hiredis"):
        extra = os.environ.get("BENCH_HIREDIS_DIR", "")
        if not extra:
            raise RuntimeError(
                "hiredis is not installed: pip install hiredis (or BENCH_HIREDIS_DIR)"
            )
        return {"PYTHONPATH": extra}
    return {}


NGINX_CONF = """\
load_module {module};
pid {run}/nginx.pid;
error_log {run}/error.log warn;
worker_processes 1;
worker_rlimit_nofile {nofile};
events {{ worker_connections 30000; }}
http {{
    access_log off;
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location ~ "^/sub/(.+)$" {{
            nchan_subscriber eventsource;
            nchan_channel_id $1;
            nchan_subscriber_first_message newest;
        }}
        location ~ "^/pub/(.+)$" {{
            nchan_publisher;
            nchan_channel_id $1;
            nchan_message_buffer_length 10;
            nchan_message_timeout 1m;
        }}
    }}
}}
"""

PUSHPIN_CONF = """\
[global]
include={{libdir}}/internal.conf
rundir={run}
ipc_prefix=b-
stats_connection_ttl=120

[runner]
services=condure,zurl,pushpin-proxy,pushpin-handler
http_port={http_port}
logdir={run}
log_level=1
client_maxconn=30000

[proxy]
routesfile=routes
sig_key={sig_key}
updates_check=off
zurl_out_specs=ipc://{{rundir}}/{{ipc_prefix}}zurl-in
zurl_out_stream_specs=ipc://{{rundir}}/{{ipc_prefix}}zurl-in-stream
zurl_in_specs=ipc://{{rundir}}/{{ipc_prefix}}zurl-out

[handler]
push_in_spec=ipc://{{rundir}}/{{ipc_prefix}}push-in
push_in_sub_specs=ipc://{{rundir}}/{{ipc_prefix}}push-in-sub
push_in_http_addr=127.0.0.1
push_in_http_port={control_port}
stats_spec=ipc://{{rundir}}/{{ipc_prefix}}stats
command_spec=ipc://{{rundir}}/{{ipc_prefix}}command
message_rate={message_rate}
message_hwm={message_hwm}
"""


def nofile() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def stock_pushpin_setting(name: str) -> int:
    """A [handler] value from Debian's shipped /etc/pushpin/pushpin.conf."""
    match = re.search(rf"^{name}=(\d+)", STOCK_PUSHPIN.read_text(), re.M)
    if not match:
        raise RuntimeError(f"{STOCK_PUSHPIN} sets no {name}")
    return int(match[1])


@contextlib.contextmanager
def start(peer: Peer, redis_url: str, prefix: str, size: int, scratch: Path) -> Iterator[Running]:
    if peer.kind in ("sidestream", "naive", "bare"):
        design = "bare-asgi" if peer.option == "asgi" else peer.kind
        env = hiredis_env(peer.option, scratch)
        server = Server(
            design,
            prefix,
            redis_url=redis_url,
            extra_env=env,
            server="streamserver" if peer.option == "streamserver" else "uvicorn",
        )
        try:
            yield Running(server.port, server.pid, "/events?channel={channel}", "bus")
        finally:
            server.stop()
        return
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url}
    py = str(VENV / "bin" / "python")
    if peer.kind == "broadcaster":
        command = [
            py, "-m", "uvicorn", "starlette_app:app", "--app-dir", str(PEERS), "--host",
            "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning",
            "--loop", "uvloop", "--http", "httptools", "--backlog", "4096",
            "--timeout-graceful-shutdown", "3",
        ]  # fmt: skip
        running = Running(port, 0, "/events?channel={channel}", "redis")
    elif peer.kind == "flask-sse":
        worker = (
            # gthread takes at most worker_connections clients (1000 unless raised)
            ["-k", "gthread", "--threads", str(size + 50), "--worker-connections", str(size + 50)]
            if peer.option == "gthread"
            else ["-k", "gevent", "--worker-connections", str(size + 50)]
        )
        command = [
            str(VENV / "bin" / "gunicorn"), "flask_sse_app:app", "--chdir", str(PEERS),
            "-b", f"127.0.0.1:{port}", "-w", "1", *worker, "--backlog", "4096",
            "--timeout", "120", "--graceful-timeout", "3", "--log-level", "warning",
        ]  # fmt: skip
        running = Running(port, 0, "/stream?channel={channel}", "flask-sse", True)
    elif peer.kind == "nchan":
        run = Path(tempfile.mkdtemp(prefix="nchan-", dir=scratch))
        (run / "nginx.conf").write_text(
            NGINX_CONF.format(module=NCHAN, run=run, port=port, nofile=nofile())
        )
        command = ["nginx", "-p", str(run), "-c", str(run / "nginx.conf"), "-g", "daemon off;"]
        running = Running(port, 0, "/sub/{channel}", "nchan")
    elif peer.kind == "pushpin":
        run = Path(tempfile.mkdtemp(prefix="pp-", dir="/tmp"))  # ipc paths must stay short
        origin_port, control_port = free_port(), free_port()
        rate, hwm = stock_pushpin_setting("message_rate"), stock_pushpin_setting("message_hwm")
        if peer.option == "raised":
            rate, hwm = RAISED_MESSAGE_RATE, RAISED_MESSAGE_RATE
        (run / "pushpin.conf").write_text(
            PUSHPIN_CONF.format(
                run=run,
                http_port=port,
                control_port=control_port,
                sig_key=uuid.uuid4().hex,
                message_rate=rate,
                message_hwm=hwm,
            )
        )
        (run / "routes").write_text(f"* 127.0.0.1:{origin_port}\n")
        origin = subprocess.Popen(
            [sys.executable, str(PEERS / "pushpin_origin.py"), str(origin_port)]
        )
        command = [
            "pushpin", "--config", str(run / "pushpin.conf"), "--merge-output",
            "--port", f"127.0.0.1:{port}",
        ]  # fmt: skip
        running = Running(port, 0, "/events/{channel}", "pushpin")
        running.poster = HttpPoster(control_port)
    else:
        raise ValueError(peer.kind)
    log = (scratch / f"{peer.name}.log").open("ab")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=scratch)
    try:
        wait_port(port, process, peer.name)
        if peer.kind == "pushpin":
            wait_port(control_port, process, "pushpin's control API")
            time.sleep(1.0)  # the proxy and handler join over ZeroMQ after the ports open
        if peer.kind == "nchan":
            running.poster = HttpPoster(port)
        running.pid = process.pid
        yield running
    finally:
        if running.poster is not None:
            running.poster.close()
        stop(process)
        if peer.kind == "pushpin":
            stop(origin)
            shutil.rmtree(run, ignore_errors=True)
        log.close()


class Publisher:
    def __init__(self, running: Running, redis_url: str, prefix: str) -> None:
        self.running = running
        self.client = redis.asyncio.Redis.from_url(redis_url, client_name=HARNESS)
        self.bus = AsyncBus(self.client, prefix=prefix)
        self.slots = asyncio.Semaphore(64)  # redis-py 8's pool holds 100 connections at most

    async def send(self, items: list[tuple[str, str]]) -> None:
        """Publish each (channel, text) item; Pushpin takes them in one request."""
        kind = self.running.publish_kind
        if kind == "pushpin":
            body = json.dumps(
                {
                    "items": [
                        {
                            "channel": channel,
                            "formats": {"http-stream": {"content": f"data: {text}\n\n"}},
                        }
                        for channel, text in items
                    ]
                }
            ).encode()
            assert self.running.poster is not None
            await self.running.poster.post("/publish/", body, "application/json")
            return
        await asyncio.gather(*(self.one(kind, channel, text) for channel, text in items))

    async def one(self, kind: str, channel: str, text: str) -> None:
        async with self.slots:
            await self.one_now(kind, channel, text)

    async def one_now(self, kind: str, channel: str, text: str) -> None:
        if kind == "bus":
            await self.bus.publish(channel, text)
        elif kind == "redis":
            await self.client.publish(channel, text)
        elif kind == "flask-sse":
            await self.client.publish(channel, json.dumps({"data": text}))
        elif kind == "nchan":
            assert self.running.poster is not None
            await self.running.poster.post(f"/pub/{channel}", text.encode())
        else:
            raise ValueError(kind)

    async def subscribers(self, channels: list[str]) -> int:
        """PUBSUB NUMSUB summed over the channels (for peers with a subscription per client)."""
        total = 0
        for start in range(0, len(channels), 500):
            answer = await self.client.pubsub_numsub(*channels[start : start + 500])
            total += sum(int(count) for _, count in answer)
        return total

    async def close(self) -> None:
        await self.client.aclose()


def server_redis_connections(redis_url: str) -> int:
    client = redis.Redis.from_url(redis_url, client_name=HARNESS)
    try:
        return sum(1 for c in client.client_list() if c.get("name") != HARNESS)
    finally:
        client.close()


def idle_share(seconds: float) -> float:
    """The share of the machine's CPU time (every core) that was idle over `seconds`."""

    def read() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return fields[3] + fields[4], sum(fields)  # idle + iowait, all

    idle_before, all_before = read()
    time.sleep(seconds)
    idle_after, all_after = read()
    return (idle_after - idle_before) / max(1, all_after - all_before)


QUIET = 0.85  # idle share of the machine's CPU before each run starts


async def settle(quiet: float = QUIET, limit_s: float = 120.0) -> float:
    """Wait until the machine has been at least `quiet` idle for a second (at most `limit_s`);
    returns how long that took."""
    began = time.monotonic()
    while time.monotonic() - began < limit_s:
        if await asyncio.to_thread(idle_share, 1.0) >= quiet:
            break
    return round(time.monotonic() - began, 1)


async def measure(
    peer: Peer,
    redis_url: str,
    scratch: Path,
    size: int,
    pattern: str,
    options: argparse.Namespace,
    profile_to: Path | None = None,
) -> dict[str, Any]:
    """One peer, one size, one pattern ("fanout": N streams on one channel; "channels": one
    stream on each of N channels). With `profile_to`, py-spy samples the server while the
    events are published and delivered (and nothing before), into that file."""
    prefix = f"bench-peers:{uuid.uuid4().hex[:8]}:"
    tag = uuid.uuid4().hex[:6]
    channels = [f"b{tag}"] if pattern == "fanout" else [f"u{tag}-{i}" for i in range(size)]
    stream_channels = channels * size if pattern == "fanout" else channels
    result: dict[str, Any] = {"peer": peer.name, "pattern": pattern, "streams": size}
    # The previous server (thousands of threads, for flask-sse on gthread) may still be
    # winding down: its CPU would be charged to this run's latencies and load, not its own.
    result["settle_s"] = await settle()
    with start(peer, redis_url, prefix, size, scratch) as running:
        publisher = Publisher(running, redis_url, prefix)
        live_channel = (
            (lambda c: publisher.bus.live_channel(c)) if running.publish_kind == "bus" else str
        )
        warm = Crowd(running.port)
        crowd = Crowd(running.port)
        try:
            # Warm-up (first-use allocations out of the memory figure), except where each client
            # holds its own Redis connection that a closed stream never gives back (naive).
            if not running.head_with_first_event and peer.kind != "naive":
                await warm.open([running.path.format(channel=f"w{tag}")] * 50, 0, True)
                warm.close()
                await asyncio.sleep(1.0)
            rss_before = tree_rss_bytes(running.pid)
            opened = time.perf_counter()
            paths = [running.path.format(channel=c) for c in stream_channels]
            await crowd.open(paths, options.sampled, not running.head_with_first_event)
            if peer.kind in ("naive", "flask-sse"):  # a subscription per client: wait for all
                names = [live_channel(c) for c in channels]
                deadline = time.monotonic() + 60
                while await publisher.subscribers(names) < size:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the streams did not all subscribe within 60 s")
                    await asyncio.sleep(0.2)
            result["open_s"] = round(time.perf_counter() - opened, 2)
            await asyncio.sleep(1.0 + size / 2000)  # let every subscription settle
            rss = tree_rss_bytes(running.pid)
            result["rss_mb"] = round(rss / 2**20, 1)
            result["idle_bytes_per_stream"] = round((rss - rss_before) / size)
            result["redis_connections"] = server_redis_connections(redis_url)
            if peer.kind == "bare":
                return result
            rate = options.rate if pattern == "fanout" else options.channel_rate
            events = round(rate * options.seconds)
            index = {c: i for i, c in enumerate(channels)}
            per_tick = max(1, round(rate / 100))  # publish in 10 ms ticks at high rates
            result["load_average_1min"] = round(os.getloadavg()[0], 2)
            spy = None
            if profile_to is not None:
                spy = subprocess.Popen(
                    [py_spy(), "record", "--pid", str(running.pid), "--format", "raw",
                     "--rate", "200", "--nonblocking", "-o", str(profile_to)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                await asyncio.sleep(2.0)  # attached
            cpu_before, own_before = tree_cpu_seconds(running.pid), own_cpu_seconds()
            begin = time.perf_counter()
            sent = 0
            while sent < events:
                batch = []
                for _ in range(min(per_tick, events - sent)):
                    channel = channels[sent % len(channels)]
                    batch.append((channel, f"{sent} {time.time():.6f}"))
                    sent += 1
                await publisher.send(batch)
                await asyncio.sleep(max(0.0, begin + sent / rate - time.perf_counter()))
            publish_s = time.perf_counter() - begin
            by_channel = [events // len(channels)] * len(channels)  # round-robin
            for extra in range(events % len(channels)):
                by_channel[extra] += 1
            expected = [by_channel[index[stream_channels[r.key]]] for r in crowd.readers]
            deadline = time.monotonic() + options.drain
            target = sum(expected)
            while time.monotonic() < deadline:
                if sum(min(e, c) for e, c in zip(expected, crowd.counts(), strict=True)) >= target:
                    break
                await asyncio.sleep(0.05)
            cpu = tree_cpu_seconds(running.pid) - cpu_before
            own = own_cpu_seconds() - own_before
            if spy is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its samples and exits
                spy.wait(timeout=60)
            counted = tally(
                expected, crowd.counts(), sum(reader.duplicates for reader in crowd.readers)
            )
            latencies = sorted(crowd.latencies)
            result.update(
                events=events,
                publish_s=round(publish_s, 2),
                **counted,
                sampled_streams=sum(1 for reader in crowd.readers if reader.sampled),
                p50_ms=round(percentile(latencies, 0.50) * 1000, 2) if latencies else None,
                p99_ms=round(percentile(latencies, 0.99) * 1000, 2) if latencies else None,
                max_ms=round(latencies[-1] * 1000, 2) if latencies else None,
                server_cpu_s=round(cpu, 3),
                deliveries_per_cpu_s=round(counted["received"] / cpu) if cpu > 0 else None,
                generator_cpu_s=round(own, 3),
            )
            return result
        finally:
            warm.close()
            crowd.close()
            await asyncio.sleep(0.2)
            await publisher.close()


# --- versions -----------------------------------------------------------------------------


def venv_versions() -> dict[str, str]:
    if not (VENV / "bin" / "python").exists():
        return {}
    listing = subprocess.run(
        [str(VENV / "bin" / "python"), "-m", "pip", "list", "--format", "json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    wanted = {"redis", "hiredis", "broadcaster", "sse-starlette", "starlette", "uvicorn",
              "flask", "flask-sse", "gunicorn", "gevent", "uvloop", "httptools"}  # fmt: skip
    return {p["name"].lower(): p["version"] for p in json.loads(listing.stdout)
            if p["name"].lower() in wanted}  # fmt: skip


def debian_version(package: str) -> str | None:
    answer = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True
    )
    return answer.stdout.strip() or None


def ensure_venv() -> None:
    stamp = VENV / ".requirements"
    wanted = (PEERS / "requirements.txt").read_text()
    if stamp.exists() and stamp.read_text() == wanted:
        return
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run(
        [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "-r",
         str(PEERS / "requirements.txt")],
        check=True,
    )  # fmt: skip
    stamp.write_text(wanted)


# --- profile ------------------------------------------------------------------------------


def socket_write_frames() -> tuple[str, ...]:
    """The frames ("path:line)") where the service hands bytes to a socket: sidestream's fast
    path, its own server and uvicorn's send. py-spy puts the time of the C call (uvloop's
    write, the kernel's send) on that Python line, so these are found in the installed
    sources, not typed here."""
    import uvicorn.protocols.http.httptools_impl as uvicorn_http

    import sidestream.http_connection
    import sidestream.servers

    frames = []
    for module, short in ((sidestream.servers, "sidestream/servers.py"),
                          (sidestream.http_connection, "sidestream/http_connection.py"),
                          (uvicorn_http, "uvicorn/protocols/http/httptools_impl.py")):  # fmt: skip
        text = Path(module.__file__ or "").read_text()
        for number, line in enumerate(text.splitlines(), start=1):
            if "transport.write(" in line:
                frames.append(f"({short}:{number})")
    return tuple(frames)


CATEGORIES = [  # first match wins, tested against each frame of a stack from the leaf up
    ("writing to sockets (uvloop's transport.write, the kernel)", socket_write_frames()),
    ("RESP parsing (redis-py, hiredis)", ("redis/_parsers", "hiredis")),
    (
        "receiving pub/sub in bulk (sidestream.bulk_reader, listener)",
        ("sidestream/bulk_reader", "sidestream/listener"),
    ),
    ("redis-py pub/sub and connection", ("redis/",)),
    ("the hub's per-event work (sidestream.hub)", ("sidestream/hub",)),
    ("SSE encoding (sidestream.sse)", ("sidestream/sse",)),
    ("Falcon (ASGI app, response streaming)", ("falcon/",)),
    ("uvicorn and httptools (per connection)", ("uvicorn/", "httptools")),
    (
        "sidestream's own server (sidestream.streamserver)",
        ("sidestream/streamserver", "sidestream/http_connection"),
    ),
    ("sidestream, other", ("sidestream/",)),
    ("asyncio and uvloop (scheduling, sockets)", ("asyncio/", "uvloop")),
]


def py_spy() -> str:
    return shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")


def summarize_profile(collapsed: str, top: int = 15) -> dict[str, Any]:
    """py-spy's raw (collapsed) stacks -> samples per category (by the innermost frame that
    names one) and the functions with the most samples of their own."""
    by_category: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        own[frames[-1]] = own.get(frames[-1], 0) + count
        category = "other"
        for frame in reversed(frames):
            found = next((name for name, keys in CATEGORIES if any(k in frame for k in keys)), None)
            if found:
                category = found
                break
        by_category[category] = by_category.get(category, 0) + count
    share = {
        name: round(100 * n / total, 1)
        for name, n in sorted(by_category.items(), key=lambda kv: -kv[1])
    }
    functions = sorted(own.items(), key=lambda kv: -kv[1])[:top]
    return {
        "samples": total,
        "percent_by_category": share,
        "top_own_time": [
            {"function": f, "percent": round(100 * n / total, 1)} for f, n in functions
        ],
    }


async def profile(redis_url: str, scratch: Path, options: argparse.Namespace) -> dict[str, Any]:
    cases = {}
    for peer_name in ("sidestream", "sidestream-streamserver", "sidestream-no-hiredis"):
        for size, pattern in ((1000, "fanout"), (1000, "channels")):
            out = scratch / f"profile-{peer_name}-{pattern}.txt"
            peer = PEER_BY_NAME[peer_name]
            run = await measure(peer, redis_url, scratch, size, pattern, options, out)
            summary = summarize_profile(out.read_text())
            if options.profile_raw:
                options.profile_raw.mkdir(parents=True, exist_ok=True)
                shutil.copy(out, options.profile_raw / out.name)
            where = (
                f"{size:,} streams on one channel"
                if pattern == "fanout"
                else f"one stream on each of {size:,} channels"
            )
            name = f"{peer.label}, {where}"
            cases[name] = {"run": run, **summary}
            print(json.dumps({name: summary["percent_by_category"]}), flush=True)
    return cases


# --- main ---------------------------------------------------------------------------------


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", default=",".join(p.name for p in PEER_LIST))
    parser.add_argument("--sizes", default="100,1000,5000", help="streams on one channel")
    parser.add_argument("--channels", type=int, default=1000, help="one stream per channel")
    parser.add_argument("--rate", type=float, default=10.0, help="events/s on the one channel")
    parser.add_argument("--channel-rate", type=float, default=1000.0, help="events/s in total")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long to publish")
    parser.add_argument("--drain", type=float, default=10.0, help="seconds to wait after")
    parser.add_argument("--sampled", type=int, default=100, help="streams that parse and time")
    parser.add_argument("--repeats", type=int, default=1, help="median of this many runs")
    parser.add_argument("--no-floor", action="store_true")
    parser.add_argument("--profile", action="store_true", help="py-spy on the service instead")
    parser.add_argument("--profile-raw", type=Path, help="keep py-spy's stacks in this folder")
    parser.add_argument("--output", type=Path, default=None)
    options = parser.parse_args()
    fd_limit = raise_fd_limit()
    peers = [PEER_BY_NAME[name] for name in options.peers.split(",")]
    if any(p.kind in ("broadcaster", "flask-sse") for p in peers):
        ensure_venv()
    cases = [(int(n), "fanout") for n in options.sizes.split(",") if n]
    if options.channels:
        cases.append((options.channels, "channels"))
    scratch = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    started = time.time()
    with private_redis("--maxclients", "20000") as server:
        if options.profile:
            report: dict[str, Any] = {
                "command": "python bench/peers.py " + " ".join(sys.argv[1:]),
                "load_average_1min": round(os.getloadavg()[0], 2),
                "tool": "py-spy " + (installed("py-spy") or "?"),
                "cases": await profile(server.url, scratch, options),
            }
            output = options.output or PROFILE
            output.write_text(json.dumps(report, indent=2) + "\n")
            print(f"wrote {output}")
            shutil.rmtree(scratch, ignore_errors=True)
            return
        runs = []
        todo = [(p, n, pat) for n, pat in cases for p in peers]
        if not options.no_floor:
            todo += [(floor, 1000, "fanout") for floor in FLOORS]
        for peer, size, pattern in todo:
            attempts = []
            for _ in range(options.repeats if peer.kind != "bare" else 1):
                try:
                    attempts.append(
                        await measure(peer, server.url, scratch, size, pattern, options)
                    )
                except Exception as error:
                    failed = f"{type(error).__name__}: {error}"[:300]
                    attempts.append(
                        {"peer": peer.name, "pattern": pattern, "streams": size, "error": failed}
                    )
                print(json.dumps(attempts[-1]), flush=True)
            good = [a for a in attempts if "error" not in a]
            runs.append(median_run(good) if good else attempts[-1])
        redis_version = redis.Redis.from_url(server.url).info("server")["redis_version"]
    report = {
        "command": "python bench/peers.py " + " ".join(sys.argv[1:]),
        "started_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime(started)),
        "duration_s": round(time.time() - started),
        "machine": {**machine(), "redis_server": redis_version},
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "fd_limit": fd_limit,
        "settings": {
            "rate_per_s": options.rate,
            "channel_rate_per_s": options.channel_rate,
            "seconds": options.seconds,
            "drain_s": options.drain,
            "sampled_streams": options.sampled,
            "repeats": options.repeats,
            "channels": options.channels,
            "quiet_idle_share": QUIET,
            "pushpin_stock_message_rate": stock_pushpin_setting("message_rate"),
            "pushpin_stock_message_hwm": stock_pushpin_setting("message_hwm"),
            "pushpin_raised_message_rate": RAISED_MESSAGE_RATE,
        },
        "versions": {
            "project_venv": {
                n: installed(n)
                for n in ("falcon", "uvicorn", "uvloop", "httptools", "redis", "hiredis")
            },
            "peers_venv": venv_versions(),
            "nginx": debian_version("nginx"),
            "libnginx-mod-nchan": debian_version("libnginx-mod-nchan"),
            "pushpin": debian_version("pushpin"),
            "redis-server": redis_version,
        },
        "peers": {
            p.name: {"label": p.label, "kind": p.kind, "note": p.note} for p in [*peers, *FLOORS]
        },
        "runs": runs,
    }
    output = options.output or RESULTS
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {output}")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
