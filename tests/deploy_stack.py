"""The production stack of examples/deploy/ on loopback, for the Deploying and Scaling-out tests.

- nginx runs examples/deploy/nginx.conf with only what must differ on a test machine replaced:
  loopback ports for `listen` and the upstream servers, a self-signed certificate, the log path.
  Each replaced text must occur exactly once, so a change to the example cannot slip past.
- Stream service instances run the ExecStart line of examples/deploy/sidestream-events@.service
  as written (`%i` = the port), with this venv's uvicorn in place of /srv's and
  examples/auth/ (the app the unit names) as the working directory.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from proxy_servers import EXAMPLES_DIR, free_port, run_nginx, stop

DEPLOY = EXAMPLES_DIR / "deploy"
NGINX_CONF = DEPLOY / "nginx.conf"
UNIT = DEPLOY / "sidestream-events@.service"
UNIT_UVICORN = "/srv/sidestream/.venv/bin/uvicorn"
STREAMS_UNIT = DEPLOY / "sidestream-streams@.service"  # sidestream.streamserver
UNIT_PYTHON = "/srv/sidestream/.venv/bin/python"
APP_DIR = EXAMPLES_DIR / "auth"  # the unit runs `service:app`: examples/auth/service.py


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and its key) that is its own trust anchor."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def replace_once(text: str, old: str, new: str) -> str:
    count = text.count(old)
    assert count == 1, f"{old!r} occurs {count} times in the example, expected once"
    return text.replace(old, new)


@dataclass(frozen=True)
class Proxy:
    """nginx running the example config."""

    https: str  # the TLS listener (HTTP/2 unless started with http2=False)
    http: str  # the port-80 server (redirects to https)
    cert: Path  # trust this to talk to `https`
    streams_log: Path  # the /events and /ws access log (written when a request ends)
    run: Path

    def client(self, timeout: float) -> httpx.Client:
        """An HTTP client on the TLS listener that trusts its certificate (HTTP/1.1)."""
        trust = ssl.create_default_context(cafile=str(self.cert))
        return httpx.Client(base_url=self.https, verify=trust, timeout=timeout)


@contextmanager
def run_proxy(
    api: str,
    services: tuple[str, str],
    *,
    http2: bool = True,
    edit: Callable[[str], str] | None = None,
) -> Iterator[Proxy]:
    """examples/deploy/nginx.conf in front of `api` and two service instances (`host:port`).

    `http2=False` drops `http2` from the TLS listener: the same site over HTTP/1.1 only.
    `edit` changes the config further (for a control experiment).
    """
    certs = Path(tempfile.mkdtemp(prefix="deploy-certs-"))
    cert, key = self_signed_certificate(certs)
    http_port, tls_port = free_port(), free_port()
    tls = f"listen 127.0.0.1:{tls_port} ssl{' http2' if http2 else ''};"
    config = NGINX_CONF.read_text()
    for old, new in [
        ("listen 80;", f"listen 127.0.0.1:{http_port};"),
        ("listen 443 ssl http2;", tls),
        ("/etc/ssl/sidestream/fullchain.pem", str(cert)),
        ("/etc/ssl/sidestream/privkey.pem", str(key)),
        ("server 127.0.0.1:8000;", f"server {api};"),
        ("server 127.0.0.1:8001;", f"server {services[0]};"),
        ("server 127.0.0.1:8002;", f"server {services[1]};"),
    ]:
        config = replace_once(config, old, new)
    log = certs / "streams.log"
    assert config.count("/var/log/nginx/streams.log") == 2  # /events and /ws
    config = config.replace("/var/log/nginx/streams.log", str(log))
    if edit is not None:
        config = edit(config)
    try:
        with run_nginx(config, http_port) as nginx:
            https, http = f"https://127.0.0.1:{tls_port}", f"http://127.0.0.1:{http_port}"
            yield Proxy(https, http, cert, log, nginx.run)
    finally:
        for path in certs.iterdir():
            path.unlink()
        certs.rmdir()


def buffering_on(config: str) -> str:
    """The config with response buffering on and the service's `X-Accel-Buffering: no`
    ignored: what a proxy left at its defaults does to a stream (a control experiment)."""
    return replace_once(
        config,
        "proxy_buffering off;",
        "proxy_buffering on; proxy_ignore_headers X-Accel-Buffering;",
    )


def unit_command(port: int, unit: Path = UNIT) -> list[str]:
    """The unit's ExecStart for instance `port` (systemd's `%i`), as an argv, with this
    machine's Python (and its uvicorn) in place of the unit's."""
    text = re.sub(r"\\\n\s*", " ", unit.read_text())  # systemd's line continuations
    lines = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    assert len(lines) == 1, lines
    argv = shlex.split(lines[0].removeprefix("ExecStart=").replace("%i", str(port)))
    if argv[0] == UNIT_PYTHON:
        return [sys.executable, *argv[1:]]
    assert argv[0] == UNIT_UVICORN, argv
    return [sys.executable, "-m", "uvicorn", *argv[1:]]


@dataclass
class Instance:
    """One stream service instance (uvicorn's parent process and its workers)."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def terminate(self) -> None:
        """What `systemctl stop` does with KillMode=mixed: SIGTERM to the parent only."""
        self.process.send_signal(signal.SIGTERM)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def run_instances(
    count: int, env: Mapping[str, str], unit: Path = UNIT
) -> Iterator[list[Instance]]:
    """`count` instances of `unit`, each on a free loopback port, ready when /healthz says so."""
    logs = Path(tempfile.mkdtemp(prefix="deploy-units-"))
    instances: list[Instance] = []
    try:
        for _ in range(count):
            port = free_port()
            log = logs / f"{port}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    unit_command(port, unit),
                    cwd=APP_DIR,
                    env={**os.environ, **env},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            instances.append(Instance(port, process, log))
        for instance in instances:
            wait_healthy(instance)
        yield instances
    finally:
        for instance in instances:
            if instance.process.poll() is None:
                stop(instance.process)
        for path in logs.iterdir():
            path.unlink()
        logs.rmdir()


def wait_healthy(instance: Instance, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"http://{instance.address}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if instance.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"instance on {instance.address} not healthy:\n{instance.output()}")
        time.sleep(0.1)


def connections_to(port: int) -> int:
    """Established TCP connections to 127.0.0.1:`port` from this machine (the client side)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state = fields[2], fields[3]
        if state == "01" and remote == f"0100007F:{port:04X}":
            count += 1
    return count
