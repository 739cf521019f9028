"""examples/quickstart: the Quickstart page, run the way a reader runs it.

Fast: examples/quickstart/api.py through Flask's test client and examples/quickstart/service.py
through falcon.testing, in this process on `memory://`.

Slow: `python -m build` makes the sdist and the wheel (checked for their files); a fresh
virtualenv gets the built wheel, not this checkout; then the sections of
examples/quickstart/commands.sh run in bash from a folder holding the three example files,
exactly as the page shows them except for the ports (free ones), the Redis URL (the test's) and
the install source (the wheel's path instead of the PyPI name). The Flask API runs under
`flask run` and the service under `uvicorn`, both from the virtualenv, on real Redis under a key
prefix of the test's own; examples/quickstart/index.html runs in Chromium.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import uuid
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import falcon.testing
import httpx
import pytest
from loopback import EXAMPLES, load_example

from sidestream.errors import InvalidConfig
from sidestream.flask import get_state
from sidestream.testing import (
    free_port,
    read_events_async,
    stop_process,
    wait_for_http,
    wait_until_async,
)

ROOT = EXAMPLES.parent
QUICKSTART = EXAMPLES / "quickstart"
KEY = "quickstart-test-key-of-32-bytes-or-more"
PAGE_FILES = ("api.py", "service.py", "index.html")


def section(name: str) -> str:
    """The lines of `commands.sh` between `[start:name]` and `[end:name]`, as the page shows."""
    text = (QUICKSTART / "commands.sh").read_text(encoding="utf-8")
    found = re.search(rf"# --8<-- \[start:{name}\]\n(.*?)# --8<-- \[end:{name}\]\n", text, re.S)
    assert found, f"commands.sh has no section {name!r}"
    return found[1]


# --- fast: the example files in this process, on memory:// -----------------------------------


@pytest.fixture
def quickstart(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, ModuleType]]:
    """api.py and service.py, loaded as their module-level apps are, on the embedded server."""
    monkeypatch.setenv("REDIS_URL", "memory://")
    monkeypatch.setenv("SIDESTREAM_TOKEN_KEY", KEY)
    monkeypatch.setenv("SIDESTREAM_KEY_PREFIX", f"quickstart-{uuid.uuid4().hex[:8]}:")
    monkeypatch.setenv("STREAM_URL", "http://stream.test/events")
    api = load_example("quickstart/api.py")
    service = load_example("quickstart/service.py")
    yield api, service
    get_state(api.app).close()


def as_user(user: str) -> dict[str, str]:
    return {"X-Demo-User": user}


def test_the_api_authorizes_every_write_and_read(
    quickstart: tuple[ModuleType, ModuleType],
) -> None:
    api, _ = quickstart
    client = api.app.test_client()
    anonymous = client.post("/channels/user:ann/events", json={"data": 1})
    assert (anonymous.status_code, anonymous.json["error"]) == (401, "unauthorized")
    assert client.get("/stream-token").status_code == 401
    sent = client.post("/channels/user:ann/events", json={"data": 1}, headers=as_user("ann"))
    assert sent.status_code == 201
    refused = client.post("/channels/user:bob/events", json={"data": 1}, headers=as_user("ann"))
    assert (refused.status_code, refused.json["error"]) == (403, "forbidden")
    assert "user:ann" in refused.json["detail"]
    bad = client.post("/channels/user:ann/events", json={"text": 1}, headers=as_user("ann"))
    assert (bad.status_code, bad.json["error"]) == (400, "invalid_body")
    # The long-poll fallback: ann reads her channel (from the start), not bob's.
    polled = client.get("/poll/user:ann?last_id=0&timeout=1", headers=as_user("ann")).json
    assert [(e["id"], e["data"]) for e in polled["events"]] == [(sent.json["id"], "1")]
    assert client.get("/poll/user:bob?last_id=0", headers=as_user("ann")).status_code == 403
    page = client.get("/")
    assert page.status_code == 200
    assert page.data == (QUICKSTART / "index.html").read_bytes()


@pytest.mark.parametrize("example", ["api.py", "service.py"])
def test_without_redis_url_neither_side_starts(
    example: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No silent embedded server: each side names both choices instead."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("SIDESTREAM_TOKEN_KEY", KEY)
    with pytest.raises(InvalidConfig) as refused:
        load_example(f"quickstart/{example}")
    assert "redis://" in str(refused.value)
    assert "memory://" in str(refused.value)


async def test_the_api_token_opens_the_users_stream_on_the_service(
    quickstart: tuple[ModuleType, ModuleType],
) -> None:
    api, service = quickstart
    client = api.app.test_client()
    issued = client.get("/stream-token", headers=as_user("ann")).json
    assert (issued["channels"], issued["url"].split("?")[0]) == (
        ["user:ann"],
        "http://stream.test/events",
    )
    path = issued["url"].removeprefix("http://stream.test")
    async with falcon.testing.ASGIConductor(service.app) as conductor:
        no_token = await conductor.simulate_get("/events?channel=user:ann")
        assert no_token.status_code == 401
        bobs = path.replace("user%3Aann", "user%3Abob")
        assert (await conductor.simulate_get(bobs)).status_code == 403
        sent = client.post("/channels/user:ann/events", json={"data": "hi"}, headers=as_user("ann"))
        async with conductor.simulate_get_stream(f"{path}&last_event_id=0") as result:
            assert result.status_code == 200
            [event] = await read_events_async(result.stream.read, count=1, timeout=10)
    assert (event.id, event.data) == (sent.json["id"], '"hi"')


# --- the package: sdist and wheel ------------------------------------------------------------


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """`python -m build` of this checkout (the sdist, then the wheel built from it)."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    [sdist] = out.glob("sidestream-*.tar.gz")
    [wheel] = out.glob("sidestream-*-py3-none-any.whl")
    return sdist, wheel


def test_the_wheel_carries_the_licence_and_only_the_library(built: tuple[Path, Path]) -> None:
    _, wheel = built
    names = zipfile.ZipFile(wheel).namelist()
    info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
    assert f"{info}/licenses/LICENSE" in names
    assert {n.split("/")[0] for n in names} == {"sidestream", info}
    assert "sidestream/py.typed" in names
    src = ROOT / "src"
    library = {p.relative_to(src).as_posix() for p in (src / "sidestream").rglob("*.py")}
    assert {n for n in names if n.endswith(".py")} == library
    metadata = zipfile.ZipFile(wheel).read(f"{info}/METADATA").decode()
    assert "License-Expression: MIT" in metadata
    assert "Requires-Python: >=3.11" in metadata
    assert "Project-URL: Changelog," in metadata


def test_the_sdist_carries_the_licence_and_changelog_and_no_site(built: tuple[Path, Path]) -> None:
    sdist, _ = built
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml", "PKG-INFO"} <= names
    assert "src/sidestream/__init__.py" in names
    tops = {name.split("/")[0] for name in names}
    assert not tops & {"tests", "docs", "examples", "bench", "site", ".venv", ".ci"}, tops


# --- slow: the wheel in a fresh virtualenv, the page's commands, real servers ---------------


def clean_environ() -> dict[str, str]:
    """This process's environment without its virtualenv and sidestream settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "REDIS_URL"}
        and not k.startswith(("SIDESTREAM_", "FLASK_", "UVICORN_"))
    }
    own_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != own_bin)
    return env


class Reader:
    """A folder with the quickstart's files and the virtualenv the page's commands made."""

    def __init__(self, home: Path, wheel: Path) -> None:
        self.home = home
        self.wheel = wheel
        self.env = clean_environ()

    def adapt(self, commands: str, ports: Mapping[str, int] | None = None) -> str:
        """The page's commands with the wheel for the PyPI name and the test's ports."""
        commands = commands.replace('"sidestream[', f'"{self.wheel}[')
        commands = commands.replace("python3 -m venv", f"{sys.executable} -m venv")
        for default, port in (ports or {}).items():
            commands = commands.replace(f"127.0.0.1:{default}", f"127.0.0.1:{port}")
            commands = commands.replace(f"--port {default}", f"--port {port}")
        return commands

    def run(self, commands: str, extra: Mapping[str, str] | None = None) -> str:
        env = {**self.env, **(extra or {})}
        env["PATH"] = f"{self.home / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"  # activated
        done = subprocess.run(
            ["bash", "-ec", commands],
            cwd=self.home,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"{commands}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    @contextmanager
    def serve(self, commands: str, port: int, extra: Mapping[str, str]) -> Iterator[str]:
        """Run a server's section (its last line under `exec`) until the block ends."""
        *setup, last = commands.strip().splitlines()
        assignments, command = re.fullmatch(r"((?:\w+=\S*\s+)*)(.*)", last).groups()  # type: ignore[union-attr]
        script = "\n".join([*setup, f"{assignments}exec {command}"])  # the server's PID is proc's
        env = {**self.env, **extra}
        env["PATH"] = f"{self.home / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"
        log = (self.home / f"server-{port}.log").open("w+b")
        proc = subprocess.Popen(
            ["bash", "-ec", script], cwd=self.home, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        base = f"http://127.0.0.1:{port}"
        try:
            try:
                wait_for_http(f"{base}/healthz", proc, 60)
            except RuntimeError as error:
                log.seek(0)
                raise AssertionError(f"{script}: {error}\n{log.read().decode()}") from None
            yield base
        finally:
            stop_process(proc)
            log.close()


@pytest.fixture(scope="session")
def reader(built: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Reader:
    """The page's install step in a fresh folder, with the wheel; the first try's extra too."""
    for tool in ("bash", "curl"):  # the page's commands are bash and curl
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found (apt-get install {tool})")
    home = tmp_path_factory.mktemp("reader")
    for name in PAGE_FILES:
        shutil.copy(QUICKSTART / name, home / name)
    reader = Reader(home, built[1])
    reader.run(reader.adapt(section("install")))
    pip_line, _ = section("first-try").strip().splitlines()
    reader.run(reader.adapt(pip_line))
    return reader


@pytest.mark.slow
def test_the_virtualenv_runs_the_wheel_not_this_checkout(reader: Reader) -> None:
    python = reader.home / ".venv" / "bin" / "python"
    where = reader.run(f"{python} -c 'import sidestream, site; print(sidestream.__file__)'")
    installed = Path(where.strip()).resolve()
    site_packages = next((reader.home / ".venv" / "lib").glob("python3*/site-packages"))
    assert installed.is_relative_to(site_packages.resolve()), installed
    assert not installed.is_relative_to(ROOT.resolve())
    tools = reader.run("command -v flask uvicorn").split()
    assert tools == [str(reader.home / ".venv" / "bin" / t) for t in ("flask", "uvicorn")]


@pytest.mark.slow
def test_the_first_try_runs_in_one_process_on_memory(reader: Reader) -> None:
    port = free_port()
    _, run_line = section("first-try").strip().splitlines()
    with reader.serve(run_line, port, {"FLASK_RUN_PORT": str(port)}):
        output = reader.run(reader.adapt(section("first-try-curl"), {"5000": port}))
    published, polled = output.strip().splitlines()
    event_id = json.loads(published)["id"]
    reply = json.loads(polled)
    assert [(e["id"], e["data"]) for e in reply["events"]] == [(event_id, '"hello"')]


def metric(base: str, name: str) -> int:
    text = httpx.get(f"{base}/metrics", timeout=5).text
    found = re.search(rf"^sidestream_{name} (\d+)$", text, re.M)
    assert found, text
    return int(found[1])


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.browser
async def test_an_event_the_api_publishes_shows_up_in_the_browser(
    reader: Reader, redis_url: str, browser: Any
) -> None:
    import asyncio

    import redis

    api_port, service_port = free_port(), free_port()
    ports = {"5000": api_port, "8001": service_port}
    prefix = f"sidestream-test:{uuid.uuid4().hex[:12]}:"
    both = {
        "SIDESTREAM_KEY_PREFIX": prefix,
        "FLASK_RUN_PORT": str(api_port),
        "STREAM_URL": f"http://127.0.0.1:{service_port}/events",
        "API_ORIGIN": f"http://127.0.0.1:{api_port}",
    }
    reader.run(section("key"))
    env = section("env").replace("redis://127.0.0.1:6379/0", redis_url)
    try:
        with (
            reader.serve(env + section("run-api"), api_port, both) as api,
            reader.serve(
                env + reader.adapt(section("run-service"), ports), service_port, both
            ) as service,
        ):
            page = await browser.new_page()
            await page.goto(f"{api}/?user=ann")
            await wait_until_async(lambda: metric(service, "open_streams") == 1, timeout=30)

            curl = reader.adapt(section("publish"), ports)
            first = json.loads(await asyncio.to_thread(reader.run, curl))["id"]
            ids = [first]
            for data in ("two", "three", "done"):
                sent = httpx.post(
                    f"{api}/channels/user:ann/events", json={"data": data}, headers=as_user("ann")
                )
                assert sent.status_code == 201
                ids.append(sent.json()["id"])
            assert len(set(ids)) == 4
            items = page.locator("#events li")
            await items.filter(has_text='"done"').wait_for(timeout=30_000)
            shown = await items.all_text_contents()
            # Each once, in order: a duplicate of an earlier one would have come before "done".
            assert shown == ['"hello, browser"', '"two"', '"three"', '"done"']

            refused = await asyncio.to_thread(reader.run, reader.adapt(section("forbidden"), ports))
            # What the page shows (examples/quickstart/forbidden.output.txt): the status line
            # and the JSON body, the headers between them left out.
            shown = (QUICKSTART / "forbidden.output.txt").read_text(encoding="utf-8")
            shown_first, _, shown_last = shown.strip().splitlines()
            lines = refused.strip().splitlines()
            assert (lines[0].strip(), lines[-1]) == (shown_first, shown_last), refused
            assert json.loads(lines[-1])["error"] == "forbidden"
            assert (await items.count()) == 4

            # Someone the API refuses gets no stream and an error, not a request loop.
            errors: list[str] = []
            refused_page = await browser.new_page()
            refused_page.on("pageerror", lambda error: errors.append(str(error)))
            async with refused_page.expect_response(lambda r: "/stream-token" in r.url) as got:
                await refused_page.goto(f"{api}/?user=Not+A+Name")
            assert (await got.value).status == 401
            await wait_until_async(lambda: len(errors) == 1, timeout=30)
            assert "no stream token: 401" in errors[0]
            assert metric(service, "open_streams") == 1  # still only ann's page
    finally:
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        assert keys, "the quickstart wrote nothing under the test's prefix"
        client.delete(*keys)
        client.close()


def test_the_page_shows_every_command_the_tests_run() -> None:
    """Sanity for the section parser: the sections the slow tests run exist and look right."""
    assert section("install").splitlines()[-1] == 'pip install "sidestream[flask,falcon]"'
    assert "REDIS_URL=memory:// flask --app api run" in section("first-try")
    assert section("run-service").strip() == "uvicorn service:app --port 8001"


def test_the_versions_the_page_states_are_the_packages() -> None:
    """The page's "What it runs on" box says what pyproject.toml declares."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    page = (ROOT / "docs" / "quickstart.md").read_text(encoding="utf-8")
    assert project["requires-python"] == ">=3.11"
    assert "**Python 3.11 or newer**" in page
    pythons = [c.rsplit(" ", 1)[1] for c in project["classifiers"] if re.search(r":: 3\.\d+$", c)]
    assert f"the package lists {pythons[0]} to {pythons[-1]}" in page
    [redis_py] = [d for d in project["optional-dependencies"]["redis"] if d.startswith("redis")]
    assert f"(`{redis_py}`" in page
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
