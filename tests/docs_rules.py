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
SKIPPED_DIRS = {"__pycache__", "node_modules", ".pytest_cache", ".ruff_cache"}
# Tool settings for the examples themselves, not shown to the reader.
SKIPPED_FILES = {"ruff.toml"}


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
        and p.name not in SKIPPED_FILES
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


# --- Pages that stand alone -------------------------------------------------------------------

EXAMPLE_LINE_LIMIT = 88  # what the content column shows at desktop width (tests/test_site.py)


def pages(root: Path) -> list[Path]:
    return sorted((root / "docs").rglob("*.md"))


def whole_file_block(path: str) -> str:
    """The collapsed block that puts a sliced file's whole text one click away."""
    return f'??? example "Whole file: {path}"\n\n    ```\n    --8<-- "{path}"\n    ```\n'


def slices_without_whole_file(root: Path) -> list[str]:
    """A page that shows part of a file also has the whole file on it (a collapsed block at least).

    A whole-file include anywhere on the page counts (an open one, or the
    `??? example "Whole file: examples/…"` block that `whole_file_block` writes).
    """
    problems = []
    for page in pages(root):
        on_page = [inc for inc in includes(root) if inc.page == page]
        whole = {inc.path for inc in on_page if inc.section is None}
        sliced = sorted({inc.path for inc in on_page if inc.section is not None} - whole)
        problems += [
            f"{page.relative_to(root)} shows part of {path} but not the whole file: add a "
            f'??? example "Whole file: {path}" block'
            for path in sliced
        ]
    return problems


def section_text(text: str, name: str) -> str:
    """The lines between `[start:name]` and `[end:name]` markers (the slice a page shows)."""
    start = re.search(rf"^.*--8<-- \[start:{re.escape(name)}\].*$", text, re.MULTILINE)
    end = re.search(rf"^.*--8<-- \[end:{re.escape(name)}\].*$", text, re.MULTILINE)
    if not start or not end:
        return ""
    return text[start.end() : end.start()]


JS_IMPORT = re.compile(r"^import\s+(?:\{([^}]*)\}|(\w+))\s+from\s+[^\n]+$", re.MULTILINE)


def _js_imports(text: str) -> list[tuple[str, set[str]]]:
    """(statement, names it binds) for each `import {a, b as c} from "..."` of a JS module."""
    found = []
    for match in JS_IMPORT.finditer(text):
        names = [n.split(" as ")[-1].strip() for n in (match[1] or match[2]).split(",")]
        found.append((match[0], {n for n in names if n}))
    return found


def _top_level_imports(text: str) -> list[tuple[str, set[str]]]:
    """(source of the statement, names it binds) for each module-level import of a Python file."""
    import ast

    tree = ast.parse(text)
    lines = text.splitlines()
    found = []
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = {(a.asname or a.name).split(".")[0] for a in node.names}
            if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                continue
            source = "\n".join(lines[node.lineno - 1 : node.end_lineno])
            found.append((source, names))
    return found


def slices_without_imports(root: Path) -> list[str]:
    """A Python or JavaScript slice that uses an imported name shows that import on the page.

    The import may be in the slice itself or in another slice of the same file on that page.
    """
    problems = []
    for page in pages(root):
        shown: dict[str, list[str]] = {}
        for inc in includes(root):
            if inc.page == page and inc.section and inc.path.endswith((".py", ".js", ".mjs")):
                shown.setdefault(inc.path, []).append(inc.section)
        for path, sections in sorted(shown.items()):
            file = root / path
            if not file.is_file():
                continue
            text = file.read_text(encoding="utf-8")
            slices = "\n".join(section_text(text, s) for s in sections)
            python = path.endswith(".py")
            comment = "#" if python else "//"
            code = "\n".join(
                line for line in slices.splitlines() if not line.lstrip().startswith(comment)
            )
            imports = _top_level_imports(text) if python else _js_imports(text)
            for statement, names in imports:
                used = sorted(n for n in names if re.search(rf"(?<![\w.]){n}\b", code))
                if used and statement not in slices:
                    problems.append(
                        f"{page.relative_to(root)} shows {path}:{','.join(sections)} using "
                        f"{', '.join(used)} without its import ({statement.splitlines()[0]})"
                    )
    return problems


# Words that only make sense beside the analysis this site was derived from: the reader never
# saw it. Say what the thing is instead ("a common Flask tutorial's SSE service").
ANALYSIS_WORDS = re.compile(r"\bthe seed\b|\bseed's\b|\bappendix\b|\bA\.\d\b", re.IGNORECASE)


def analysis_words(root: Path) -> list[str]:
    problems = []
    for file in [*pages(root), *example_files(root)]:
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            for match in ANALYSIS_WORDS.finditer(line):
                problems.append(f"{file.relative_to(root)}:{number}: {match[0]!r}")
    return problems


def overlong_example_lines(root: Path, limit: int = EXAMPLE_LINE_LIMIT) -> list[str]:
    """Example lines longer than the rendered code column holds (it would scroll sideways)."""
    problems = []
    for file in example_files(root):
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            if len(line) > limit:
                rel = file.relative_to(root)
                problems.append(f"{rel}:{number}: {len(line)} characters (limit {limit})")
    return problems


# A measured figure, goal or run parameter in prose: a number followed by a unit or by what was
# counted. Such numbers reach a page through `<!-- bench-value: NAME dotted.path -->` or a
# `<!-- bench-table: NAME -->` (bench/tables.py), never typed by hand.
_UNIT = (
    r"(?:ms|µs|us|ns|s|secs?|seconds?|minutes?|hours?|[kKMG]i?B|B|bytes|%|x|\u00d7|/s"
    r"|per\s+(?:second|CPU|core|stream|socket|event)|events?\s+per|deliveries|CPU-s"
    r"|connections|streams|sockets|clients|events|subscribers|requests|tabs|waiters)"
)
MEASURED = re.compile(
    r"(?<![\w.:/-])(?![1-5]\d\ds\b)(?:~|≈)?(?:\d[\d,.]*\d|\d)"
    r"(?:\s*[\u2013-]\s*\d[\d,.]*)?\s?" + _UNIT + r"(?!\w)"
)
# `<!-- not-measured: 15 seconds (the heartbeat's default); 256 events (the queue bound) -->`:
# numbers on this page that are settings or protocol constants, each with the reason in brackets.
NOT_MEASURED = re.compile(r"<!--\s*not-measured:(.*?)-->", re.DOTALL)


def _blank(match: re.Match[str]) -> str:
    return "\n" * match[0].count("\n")


def prose(markdown: str) -> str:
    """The page's text with code blocks, inline code and HTML comments blanked (lines kept)."""
    fence = r"^([ \t]*)(```|~~~).*?^\1\2"
    text = re.sub(fence, _blank, markdown, flags=re.DOTALL | re.MULTILINE)
    text = re.sub(r"<!--.*?-->", _blank, text, flags=re.DOTALL)
    return re.sub(r"`[^`\n]*`", "``", text)


def _normal(phrase: str) -> str:
    return " ".join(phrase.split())


def not_measured(markdown: str) -> set[str]:
    allowed = set()
    for block in NOT_MEASURED.findall(markdown):
        for item in block.split(";"):
            phrase = re.sub(r"\(.*\)", "", item, flags=re.DOTALL)
            if phrase.strip():
                allowed.add(_normal(phrase))
    return allowed


def hand_typed_numbers(root: Path) -> list[str]:
    problems = []
    for page in pages(root):
        markdown = page.read_text(encoding="utf-8")
        allowed = not_measured(markdown)
        for number, line in enumerate(prose(markdown).splitlines(), 1):
            for match in MEASURED.finditer(line):
                if _normal(match[0]) not in allowed:
                    problems.append(
                        f"{page.relative_to(root)}:{number}: {match[0]!r} typed by hand "
                        "(render it with <!-- bench-value: NAME path --> or, for a setting, "
                        "list it in <!-- not-measured: ... (why) -->)"
                    )
    return problems


def nav_order(root: Path) -> list[str]:
    """The pages of mkdocs.yml's nav, in order (docs-relative paths)."""
    config = (root / "mkdocs.yml").read_text(encoding="utf-8")
    nav = config[config.index("\nnav:") :]
    return re.findall(r"^\s*-\s+(?:[^\n]*?:\s+)?([\w./-]+\.md)\s*$", nav, re.MULTILINE)


NEXT_LINK = re.compile(r"^Next:.*?\]\(([^)#\s]+)(?:#[^)]*)?\)", re.MULTILINE)


def wrong_next_links(root: Path) -> list[str]:
    """A page's `Next: [...](page.md)` line points to the page that follows it in the nav."""
    order = nav_order(root)
    problems = []
    for index, name in enumerate(order):
        page = root / "docs" / name
        if not page.is_file():
            continue
        following = order[index + 1] if index + 1 < len(order) else None
        for match in NEXT_LINK.finditer(page.read_text(encoding="utf-8")):
            if match[1] != following:
                problems.append(
                    f"docs/{name}: Next links to {match[1]}, but the nav's next page is "
                    f"{following or 'none (this is the last page)'}"
                )
    return problems


def modules_without_reference(root: Path) -> list[str]:
    """Every public module of the library has its page under docs/reference/ (`::: module`)."""
    package = root / "src" / "sidestream"
    modules = {
        ".".join(("sidestream", *p.relative_to(package).with_suffix("").parts))
        for p in package.rglob("*.py")
        if not any(part.startswith("_") for part in p.relative_to(package).parts)
    } | {
        ".".join(("sidestream", *p.parent.relative_to(package).parts))
        for p in package.rglob("__init__.py")
        if p.parent != package
        and not any(part.startswith("_") for part in p.parent.relative_to(package).parts)
    }
    documented = {
        match[1]
        for page in (root / "docs" / "reference").glob("*.md")
        for match in re.finditer(r"^::: ([\w.]+)\s*$", page.read_text(encoding="utf-8"), re.M)
    }
    # Each module by name: mkdocstrings does not render a package's submodules by default.
    return [
        f"{module} has no page under docs/reference/ (a page with `::: {module}`)"
        for module in sorted(modules - documented)
    ]


TESTED_HEADING = re.compile(r"^#{1,6} How (?:this|it) is tested\b.*$", re.MULTILINE | re.IGNORECASE)


def uncollapsed_test_sections(root: Path) -> list[str]:
    """ "How this is tested" is a collapsed `??? note`, not a section of the reader's path."""
    problems = []
    for page in pages(root):
        text = page.read_text(encoding="utf-8")
        for match in TESTED_HEADING.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            problems.append(
                f'{page.relative_to(root)}:{line}: a heading; use ??? note "How this is tested"'
            )
    return problems
