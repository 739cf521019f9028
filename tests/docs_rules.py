"""The site's rules, as functions over a repository root that return the problems they find.

`tests/test_docs.py` runs each on this repository (expecting no problems) and on a small broken tree
(expecting the problem), so every rule is shown to be able to fail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# `--8<-- "examples/chapter/file.py"` or `--8<-- "examples/chapter/file.py:section"`.
INCLUDE = re.compile(r'^\s*-{1,3}8<-{1,3}\s+"(?P<target>[^"]+)"\s*$', re.MULTILINE)
SKIPPED_DIRS = {"__pycache__", "node_modules", ".pytest_cache"}


@dataclass(frozen=True)
class Include:
    page: Path
    path: str
    section: str | None


def example_files(root: Path) -> list[Path]:
    """Every file under examples/ that a reader could be shown (caches left out)."""
    base = root / "examples"
    return sorted(
        p
        for p in base.rglob("*")
        if p.is_file()
        and not SKIPPED_DIRS.intersection(p.relative_to(base).parts)
        and p.suffix not in {".pyc"}
    )


def includes(root: Path) -> list[Include]:
    found = []
    for page in sorted((root / "docs").rglob("*.md")):
        for match in INCLUDE.finditer(page.read_text(encoding="utf-8")):
            target = match["target"]
            path, _, section = target.partition(":")
            found.append(Include(page, path, section or None))
    return found


def broken_includes(root: Path) -> list[str]:
    """Includes whose file, or whose `# --8<-- [start:name]` section, does not exist."""
    problems = []
    for inc in includes(root):
        file = root / inc.path
        where = f"{inc.page.relative_to(root)} includes {inc.path}"
        if not file.is_file():
            problems.append(f"{where}: no such file")
            continue
        if inc.section and not inc.section.replace(":", "").isdigit():
            text = file.read_text(encoding="utf-8")
            for marker in ("start", "end"):
                if f"--8<-- [{marker}:{inc.section}]" not in text:
                    problems.append(f"{where}: no [{marker}:{inc.section}] marker")
    return problems


def unincluded_examples(root: Path) -> list[str]:
    """Example files that no page includes: a file in examples/ exists to be shown."""
    shown = {(root / inc.path).resolve() for inc in includes(root)}
    return [
        f"{p.relative_to(root)} is not included by any page"
        for p in example_files(root)
        if p.resolve() not in shown
    ]


def untested_examples(root: Path) -> list[str]:
    """Example files that no test names: every example runs in at least one test."""
    tests_text = "\n".join(p.read_text(encoding="utf-8") for p in (root / "tests").rglob("*.py"))
    problems = []
    for p in example_files(root):
        rel = p.relative_to(root / "examples").as_posix()
        if rel not in tests_text:
            problems.append(f"examples/{rel} is not named by any test under tests/")
    return problems


def only_includes(source: str) -> bool:
    """True for a block that is nothing but `--8<--` includes (pytest-examples can't run it)."""
    lines = [line for line in source.splitlines() if line.strip()]
    return bool(lines) and all(INCLUDE.match(line) for line in lines)
