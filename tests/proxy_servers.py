"""Run Debian's Pushpin and nginx (with Nchan) as the test's own processes, on loopback ports.

Each server gets a configuration generated into a fresh temporary directory (never the system
service, never /etc). When the program or module is missing the test skips, which
`SIDESTREAM_NO_SKIP=1` (CI) turns into a failure.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest
from loopback import serving

from sidestream.testing import free_port

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
PROBE_PATH = "/.pushpin-ready-probe"
NCHAN_MODULES = (
    Path("/usr/lib/nginx/modules/ngx_nchan_module.so"),
    Path("/usr/share/nginx/modules/ngx_nchan_module.so"),
)


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                output = log.read_text(errors="replace") if log.exists() else ""
                raise RuntimeError(f"nothing listens on 127.0.0.1:{port}:\n{output}") from None
            time.sleep(0.05)


class HoldProbe(BaseHTTPRequestHandler):
    """An origin that answers every request with a GRIP stream hold, for the readiness probe."""

    def do_GET(self) -> None:
        self.send_response(200)
        for name, value in [
            ("Content-Type", "text/plain"),
            ("Content-Length", "0"),
            ("Grip-Hold", "stream"),
            ("Grip-Channel", "ready-probe"),
        ]:
            self.send_header(name, value)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def wait_for_holds(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until Pushpin can hold a stream: its front end answers before the proxy reaches the
    handler (ZeroMQ connects in the background), and until then a hold is a 500."""
    deadline = time.monotonic() + 15
    while True:
        try:
            with httpx.stream("GET", f"{url}{PROBE_PATH}", timeout=2) as response:
                if response.status_code == 200:
                    return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"Pushpin does not hold streams:\n{log.read_text()}")
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@dataclass(frozen=True)
class Pushpin:
    url: str  # where clients connect (Pushpin proxies to the origin)
    control_url: str  # the GRIP control API the backend publishes to
    sig_key: str  # what Pushpin signs Grip-Sig with
    log: Path


PUSHPIN_CONF = """\
[global]
include={{libdir}}/internal.conf
rundir={run}
ipc_prefix=t-
stats_connection_ttl=120

[runner]
# Debian's internal.conf expects a system-wide zurl; this instance runs its own.
services=condure,zurl,pushpin-proxy,pushpin-handler
http_port={http_port}
logdir={run}
log_level=2
client_maxconn=200

[proxy]
routesfile=routes
sig_iss=pushpin
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
"""


@contextmanager
def run_pushpin(origin: str, sig_key: str) -> Iterator[Pushpin]:
    """Pushpin on two loopback ports, proxying every path to `origin` (`host:port`)."""
    if shutil.which("pushpin") is None or shutil.which("condure") is None:
        pytest.skip("pushpin is not installed (apt-get install pushpin)")
    # A short directory: ZeroMQ ipc:// paths must fit in a Unix socket address (108 bytes).
    run = Path(tempfile.mkdtemp(prefix="pushpin-"))
    http_port, control_port = free_port(), free_port()
    conf = run / "pushpin.conf"
    conf.write_text(
        PUSHPIN_CONF.format(
            run=run, http_port=http_port, control_port=control_port, sig_key=sig_key
        )
    )
    log = run / "pushpin.log"
    with serving(HoldProbe) as probe:
        routes = f"*,path_beg={PROBE_PATH} {probe.removeprefix('http://')}\n* {origin}\n"
        (run / "routes").write_text(routes)
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    "pushpin",
                    "--config",
                    str(conf),
                    "--merge-output",
                    "--port",
                    f"127.0.0.1:{http_port}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=run,
            )
        try:
            wait_for_port(control_port, proc, log)
            wait_for_holds(f"http://127.0.0.1:{http_port}", proc, log)
            yield Pushpin(
                f"http://127.0.0.1:{http_port}", f"http://127.0.0.1:{control_port}", sig_key, log
            )
        finally:
            stop(proc)
            shutil.rmtree(run, ignore_errors=True)


NGINX_CONF = """\
{load_modules}
pid {run}/nginx.pid;
error_log {run}/error.log notice;
worker_processes 1;
events {{ worker_connections 512; }}
http {{
    access_log {run}/access.log;
    client_body_temp_path {run}/client_body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
{http}
}}
"""


def nchan_module() -> Path:
    if shutil.which("nginx") is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    for path in NCHAN_MODULES:
        if path.exists():
            return path
    pytest.skip("the Nchan module is not installed (apt-get install libnginx-mod-nchan)")


def nginx_version() -> tuple[int, ...]:
    if shutil.which("nginx") is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    banner = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", banner)
    assert match, banner
    return tuple(int(part) for part in match.groups())


@dataclass(frozen=True)
class Nginx:
    run: Path  # its directory: error.log, access.log

    def check(self) -> subprocess.CompletedProcess[str]:
        """`nginx -t` on the configuration (what an operator runs before a reload)."""
        return subprocess.run(
            ["nginx", "-t", "-p", str(self.run), "-c", str(self.run / "nginx.conf")],
            capture_output=True,
            text=True,
        )


@contextmanager
def nginx_config(http: str, *, modules: tuple[Path, ...] = ()) -> Iterator[Nginx]:
    """A generated nginx.conf (not started) whose `http {}` block holds `http`."""
    if shutil.which("nginx") is None:
        pytest.skip("nginx is not installed (apt-get install nginx)")
    run = Path(tempfile.mkdtemp(prefix="nginx-"))
    load_modules = "\n".join(f"load_module {module};" for module in modules)
    (run / "nginx.conf").write_text(
        NGINX_CONF.format(load_modules=load_modules, run=run, http=http)
    )
    try:
        yield Nginx(run)
    finally:
        shutil.rmtree(run, ignore_errors=True)


@contextmanager
def run_nginx(http: str, port: int, *, modules: tuple[Path, ...] = ()) -> Iterator[Nginx]:
    """nginx in the foreground as this test's process; `http` must listen on 127.0.0.1:`port`."""
    with nginx_config(http, modules=modules) as nginx:
        checked = nginx.check()
        if checked.returncode != 0:
            raise RuntimeError(f"nginx -t failed:\n{checked.stderr}")
        log = nginx.run / "error.log"
        proc = subprocess.Popen(
            [
                "nginx",
                "-p",
                str(nginx.run),
                "-c",
                str(nginx.run / "nginx.conf"),
                "-g",
                "daemon off;",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(port, proc, log)
            yield nginx
        finally:
            stop(proc)
