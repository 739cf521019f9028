"""examples/testing/: the test files a reader copies, run the way pytest runs them in a new project.

Each file runs in a pytest subprocess of its own with a bare `pytest.ini` (none of this
repository's configuration or fixtures), and must pass with nothing skipped. A copy with a bug
put into the app must fail, in the test that is there to catch it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import pytest
from loopback import EXAMPLES

pytestmark = pytest.mark.slow

# A project's minimal configuration: pytest-asyncio in its default (strict) mode.
INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"


@dataclass
class Run:
    returncode: int
    output: str
    outcomes: dict[str, str]  # test name -> passed / failed / error / skipped


def run_pytest(project: Path, files: list[Path], env: dict[str, str]) -> Run:
    (project / "pytest.ini").write_text(INI)
    report = project / "report.xml"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"),
            *("-c", str(project / "pytest.ini"), "--rootdir", str(project)),
            f"--junitxml={report}",
            *map(str, files),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    outcomes = {}
    for case in ElementTree.parse(report).iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        outcomes[case.attrib["name"]] = (
            {"failure": "failed"}.get(kinds[0], kinds[0]) if kinds else "passed"
        )
    return Run(result.returncode, result.stdout + result.stderr, outcomes)


def environment(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "PYTEST_ADDOPTS")}
    return {**env, **settings}


@pytest.mark.parametrize(
    "example",
    [
        pytest.param("testing/test_api.py", marks=pytest.mark.redis),
        "testing/test_stream.py",
        "testing/test_servers.py",
        pytest.param("testing/test_browser.py", marks=pytest.mark.browser),
    ],
)
def test_the_example_passes_with_nothing_skipped(
    example: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    settings = {}
    if example == "testing/test_api.py":  # on fakeredis, and on a real Redis too
        settings["REDIS_URL"] = request.getfixturevalue("redis_url")
    if example == "testing/test_browser.py":
        settings["CHROMIUM"] = request.getfixturevalue("chromium_path")
    run = run_pytest(tmp_path, [EXAMPLES / example], environment(**settings))
    assert run.returncode == 0, run.output
    assert run.outcomes, run.output
    assert set(run.outcomes.values()) == {"passed"}, run.outcomes
    if "REDIS_URL" in settings:
        backends = {name.partition("[")[2].rstrip("]") for name in run.outcomes}
        assert backends == {"memory://", settings["REDIS_URL"]}


def test_the_api_tests_catch_an_api_that_publishes_the_wrong_data(tmp_path: Path) -> None:
    app = (EXAMPLES / "testing/app.py").read_text()
    broken = app.replace(
        'bus.publish(channel, body["text"])', 'bus.publish(channel, body["text"] + "!")'
    )
    assert broken != app
    (tmp_path / "app.py").write_text(broken)
    shutil.copy(EXAMPLES / "testing/test_api.py", tmp_path / "test_api.py")
    run = run_pytest(tmp_path, [tmp_path / "test_api.py"], environment())
    assert run.returncode == 1, run.output
    failed = {name for name, outcome in run.outcomes.items() if outcome != "passed"}
    assert failed == {"test_a_post_publishes_one_event[memory://]"}
