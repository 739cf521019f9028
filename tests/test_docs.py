"""The docs pipeline's rules, each a test that fails when the rule is broken."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from docs_rules import (
    EXAMPLE_LINE_LIMIT,
    analysis_words,
    broken_includes,
    hand_typed_numbers,
    modules_without_reference,
    nav_order,
    only_includes,
    overlong_example_lines,
    slices_without_imports,
    slices_without_whole_file,
    uncollapsed_test_sections,
    unincluded_examples,
    untested_examples,
    whole_file_block,
    wrong_next_links,
)
from pytest_examples import CodeExample, EvalExample, find_examples

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# Literal Python blocks in the pages and in the library's docstrings. Blocks that are only a
# `--8<--` include are left out here: their file is tested by tests/examples/ instead.
LITERAL_EXAMPLES = [
    ex
    for ex in find_examples(str(ROOT / "docs"), str(ROOT / "src"))
    if not only_includes(ex.source)
]


@pytest.mark.parametrize("example", LITERAL_EXAMPLES, ids=str)
def test_literal_examples_run_and_lint(example: CodeExample, eval_example: EvalExample) -> None:
    # Blocks on the pages are held to the code column's width, like examples/; docstrings to
    # the library's.
    on_a_page = example.path.is_relative_to(ROOT / "docs")
    width = EXAMPLE_LINE_LIMIT if on_a_page else 100
    eval_example.set_config(line_length=width, target_version="py311")
    if eval_example.update_examples:
        eval_example.format(example)
        eval_example.run_print_update(example)
    else:
        eval_example.lint(example)
        eval_example.run_print_check(example)


def test_there_are_literal_examples() -> None:
    # Guards the collection above: a path mistake must not turn the test into zero tests.
    assert LITERAL_EXAMPLES, "found no literal Python examples in docs/ or src/"


def test_every_include_target_exists() -> None:
    assert broken_includes(ROOT) == []


def test_every_example_file_is_included_by_a_page() -> None:
    assert unincluded_examples(ROOT) == []


def test_every_example_file_is_named_by_a_test() -> None:
    assert untested_examples(ROOT) == []


def make_broken_tree(root: Path) -> None:
    (root / "docs").mkdir()
    (root / "examples" / "chapter").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "examples" / "chapter" / "shown.py").write_text(
        "# --8<-- [start:a]\nx = 1\n# --8<-- [end:a]\n"
    )
    (root / "examples" / "chapter" / "orphan.py").write_text("y = 2\n")
    (root / "docs" / "page.md").write_text(
        '```python\n--8<-- "examples/chapter/shown.py:a"\n```\n'
        '```python\n--8<-- "examples/chapter/shown.py:missing"\n```\n'
        '```python\n--8<-- "examples/chapter/gone.py"\n```\n'
    )
    (root / "tests" / "test_x.py").write_text('PATH = "chapter/shown.py"\n')


def test_rules_catch_a_broken_tree(tmp_path: Path) -> None:
    make_broken_tree(tmp_path)
    assert broken_includes(tmp_path) == [
        "docs/page.md includes examples/chapter/shown.py: no [start:missing] marker",
        "docs/page.md includes examples/chapter/shown.py: no [end:missing] marker",
        "docs/page.md includes examples/chapter/gone.py: no such file",
    ]
    assert unincluded_examples(tmp_path) == [
        "examples/chapter/orphan.py is not included by any page"
    ]
    assert untested_examples(tmp_path) == [
        "examples/chapter/orphan.py is not named by any test under tests/"
    ]


def make_page_tree(root: Path) -> None:
    """A tiny site with one of each problem the 'pages that stand alone' rules look for."""
    (root / "docs").mkdir()
    (root / "examples" / "ch").mkdir(parents=True)
    (root / "examples" / "ch" / "app.py").write_text(
        "# --8<-- [start:imports]\nimport json\n# --8<-- [end:imports]\n\n"
        "# --8<-- [start:view]\ndef view() -> str:\n"
        '    return json.dumps({"seen": True})\n# --8<-- [end:view]\n'
        "# The seed's appendix A.3 did this with a class variable.\n"
        f"x = {'1' * EXAMPLE_LINE_LIMIT}\n"
    )
    (root / "mkdocs.yml").write_text(
        "site_name: t\nnav:\n  - Home: index.md\n  - Guide:\n      - One: one.md\n"
        "      - Two: two.md\n  - Reference: three.md\n"
    )
    (root / "docs" / "index.md").write_text("Next: [one](one.md).\n")
    (root / "docs" / "one.md").write_text(
        '```python\n--8<-- "examples/ch/app.py:view"\n```\n\n'
        "Each stream costs 13 KB and answers in 25 ms; the service listens on port 8000.\n"
        "<!-- not-measured: 15 seconds (the heartbeat's default) -->\n"
        "A heartbeat every 15 seconds; `sleep(30 s)` in code is not prose.\n\n"
        "Next: [three](three.md#part).\n"
    )
    (root / "docs" / "two.md").write_text(
        '```python\n--8<-- "examples/ch/app.py:imports"\n--8<-- "examples/ch/app.py:view"\n```\n'
        + whole_file_block("examples/ch/app.py")
        + "\nNext: [three](three.md).\n"
    )
    (root / "docs" / "three.md").write_text("The seed said so.\n")


def test_nav_order_reads_the_nav(tmp_path: Path) -> None:
    make_page_tree(tmp_path)
    assert nav_order(tmp_path) == ["index.md", "one.md", "two.md", "three.md"]
    assert nav_order(ROOT)[0] == "index.md" and "reference.md" in nav_order(ROOT)


def test_page_rules_catch_a_broken_tree(tmp_path: Path) -> None:
    make_page_tree(tmp_path)
    assert slices_without_whole_file(tmp_path) == [
        "docs/one.md shows part of examples/ch/app.py but not the whole file: add a "
        '??? example "Whole file: examples/ch/app.py" block'
    ]
    # two.md shows the imports section with the view; one.md shows the view alone.
    assert slices_without_imports(tmp_path) == [
        "docs/one.md shows examples/ch/app.py:view using json without its import (import json)",
    ]
    # The same for a JavaScript module's imports.
    (tmp_path / "examples" / "ch" / "client.js").write_text(
        'import { openStream as open } from "./stream.js";\n\n'
        "// --8<-- [start:use]\nopen('/events');\n// --8<-- [end:use]\n"
    )
    (tmp_path / "docs" / "four.md").write_text('```js\n--8<-- "examples/ch/client.js:use"\n```\n')
    assert slices_without_imports(tmp_path)[0] == (
        "docs/four.md shows examples/ch/client.js:use using open without its import "
        '(import { openStream as open } from "./stream.js";)'
    )
    assert analysis_words(tmp_path) == [
        "docs/three.md:1: 'The seed'",
        "examples/ch/app.py:9: 'The seed'",
        "examples/ch/app.py:9: 'appendix'",
        "examples/ch/app.py:9: 'A.3'",
    ]
    assert overlong_example_lines(tmp_path) == [
        f"examples/ch/app.py:10: {EXAMPLE_LINE_LIMIT + 4} characters (limit {EXAMPLE_LINE_LIMIT})"
    ]
    assert [p.split(" typed by hand")[0] for p in hand_typed_numbers(tmp_path)] == [
        "docs/one.md:5: '13 KB'",
        "docs/one.md:5: '25 ms'",
    ]
    assert wrong_next_links(tmp_path) == [
        "docs/one.md: Next links to three.md, but the nav's next page is two.md",
    ]


def test_only_includes_tells_include_blocks_from_code() -> None:
    assert only_includes('--8<-- "examples/a.py"\n')
    assert only_includes('--8<-- "examples/a.py:part"\n\n--8<-- "examples/b.py"\n')
    assert not only_includes('--8<-- "examples/a.py"\nprint(1)\n')
    assert not only_includes("")


def run_mkdocs_build(
    site_dir: Path, config: Path = ROOT / "mkdocs.yml"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(BIN / "mkdocs"),
            "build",
            "--strict",
            "--config-file",
            str(config),
            "--site-dir",
            str(site_dir),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_strict_build_succeeds(tmp_path: Path) -> None:
    result = run_mkdocs_build(tmp_path / "site")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "event-stream-format" / "index.html").is_file()


def copy_site(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of docs/ and a mkdocs.yml that builds it, for breaking one thing at a time."""
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    config = (ROOT / "mkdocs.yml").read_text()
    # Paths in the config are relative to its own folder: point them back at the repository.
    for relative in ("examples", "src", "bench/tables.py"):
        config = config.replace(f"  - {relative}\n", f"  - {ROOT / relative}\n")
    config_file = tmp_path / "mkdocs.yml"
    config_file.write_text(config + f"\ndocs_dir: {docs}\n")
    return docs, config_file


def test_strict_build_fails_on_a_missing_include(tmp_path: Path) -> None:
    # The same site with one include pointing nowhere must not build: snippets' check_paths is on.
    docs, config = copy_site(tmp_path)
    page = docs / "event-stream-format.md"
    page.write_text(page.read_text() + '\n```python\n--8<-- "examples/nowhere.py"\n```\n')
    result = run_mkdocs_build(tmp_path / "site", config)
    assert result.returncode != 0
    assert "nowhere.py" in result.stderr


def test_strict_build_fails_on_a_broken_link(tmp_path: Path) -> None:
    docs, config = copy_site(tmp_path)
    page = docs / "index.md"
    page.write_text(page.read_text() + "\n[gone](no-such-page.md)\n")
    result = run_mkdocs_build(tmp_path / "site", config)
    assert result.returncode != 0
    assert "no-such-page.md" in result.stderr


def test_strict_build_of_an_unbroken_copy_succeeds(tmp_path: Path) -> None:
    # Proves the two tests above fail for the reason they name, not because the copy cannot build.
    _, config = copy_site(tmp_path)
    result = run_mkdocs_build(tmp_path / "site", config)
    assert result.returncode == 0, result.stderr[-3000:]


def netlify() -> dict:
    return tomllib.loads((ROOT / "netlify.toml").read_text())


def test_netlify_config_builds_strictly_and_sends_security_headers() -> None:
    config = netlify()
    assert "mkdocs build --strict" in config["build"]["command"]
    assert config["build"]["publish"] == "site"
    assert config["build"]["environment"]["PYTHON_VERSION"]
    headers = {
        k: v for rule in config["headers"] if rule["for"] == "/*" for k, v in rule["values"].items()
    }
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["Referrer-Policy"]
    assert not any(r.get("from") == "/*" for r in config.get("redirects", [])), "no SPA catch-all"


def test_netlify_build_command_produces_the_site(tmp_path: Path) -> None:
    # Run Netlify's own command, as written, with this venv first on PATH (as Netlify's Python is).
    command = netlify()["build"]["command"]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PIP_QUIET": "1"}
    workdir = tmp_path / "checkout"
    shutil.copytree(
        ROOT,
        workdir,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "site", "__pycache__", ".pytest_cache", ".hypothesis", "node_modules"
        ),
    )
    result = subprocess.run(
        ["sh", "-c", command], cwd=workdir, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"{shlex.quote(command)} failed:\n{result.stderr[-3000:]}"
    assert (workdir / "site" / "index.html").is_file()


def test_no_words_from_the_analysis_the_site_was_derived_from() -> None:
    assert analysis_words(ROOT) == []


def test_event_stream_example_server_leaves_the_docs_port_alone() -> None:
    # `python examples/event_stream/serve.py` runs beside `mkdocs serve` (port 8000): with no PORT
    # it takes a free port and prints the address to open.
    env = {k: v for k, v in os.environ.items() if k != "PORT"}
    proc = subprocess.Popen(
        [sys.executable, "serve.py"],
        cwd=ROOT / "examples" / "event_stream",
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("open http://127.0.0.1:"), line
        url = line.split()[1]
        assert not url.endswith(":8000/")
        import httpx

        response = httpx.get(url, timeout=10)
        assert response.status_code == 200 and "import { listen }" in response.text
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_every_next_link_follows_the_nav() -> None:
    assert wrong_next_links(ROOT) == []


def test_every_module_has_a_reference_page(tmp_path: Path) -> None:
    assert modules_without_reference(ROOT) == []
    (tmp_path / "src" / "sidestream" / "hub").mkdir(parents=True)
    (tmp_path / "docs" / "reference").mkdir(parents=True)
    for name in ("__init__.py", "sse.py", "_private.py", "hub/__init__.py", "hub/listener.py"):
        (tmp_path / "src" / "sidestream" / name).write_text("")
    (tmp_path / "docs" / "reference" / "sse.md").write_text("# sse\n\n::: sidestream.sse\n")
    assert modules_without_reference(tmp_path) == [
        "sidestream.hub has no page under docs/reference/ (a page with `::: sidestream.hub`)",
        "sidestream.hub.listener has no page under docs/reference/ "
        "(a page with `::: sidestream.hub.listener`)",
    ]


def test_every_sliced_example_has_its_whole_file_on_the_page() -> None:
    assert slices_without_whole_file(ROOT) == []


def test_every_python_slice_shows_its_imports() -> None:
    assert slices_without_imports(ROOT) == []


def test_every_example_line_fits_the_code_column() -> None:
    assert overlong_example_lines(ROOT) == []


def test_no_measured_number_is_typed_by_hand() -> None:
    assert hand_typed_numbers(ROOT) == []


def test_how_this_is_tested_is_collapsed(tmp_path: Path) -> None:
    assert uncollapsed_test_sections(ROOT) == []
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text(
        '# A\n\n??? note "How this is tested"\n\n    Fine.\n\n## How this is tested\n\nNot.\n'
    )
    assert uncollapsed_test_sections(tmp_path) == [
        'docs/a.md:7: a heading; use ??? note "How this is tested"'
    ]
