"""Lint, format and types are part of the suite: CI fails on them like on any other test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CODE = ["src", "tests", "examples", "bench"]


@pytest.mark.parametrize(
    "command",
    [
        [str(BIN / "ruff"), "check", *CODE],
        [str(BIN / "ruff"), "format", "--check", *CODE],
        [str(BIN / "mypy")],  # strict, on src/ (pyproject's [tool.mypy])
    ],
    ids=["ruff-check", "ruff-format", "mypy-strict"],
)
def test_code_is_clean(command: list[str]) -> None:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
