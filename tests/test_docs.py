"""Docs that run: every ```python block of README.md and docs/*.md is executed, and so is
every script in examples/.

The blocks of one page run in order, in one namespace (a page's later blocks build on its
earlier ones), inside a scratch folder (a block may write files). A block that is
deliberately not runnable is fenced as ```python no-run: <why>, visible to every reader; keep
those rare. Where a `print(...)` line states its output in a comment
(`print(f"{g.data:.4f}")  # 24.7041, the outcome ...`), the block must print exactly that.
"""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if not (ROOT / "docs").is_dir():
    pytest.skip("docs/ is not beside tests/ (a source checkout has it)", allow_module_level=True)
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
# `print(...)  # 24.7041, ...`: a printed value stated in the comment (a number).
STATED_OUTPUT = re.compile(r"^\s*print\(.*\)\s*#\s*(?P<value>-?\d[\d.,e+-]*?),?(\s|$)")


@dataclass
class Block:
    page: Path
    line: int  # line of the opening fence, 1-based
    info: str  # what follows the fence: "python", "python no-run: why", "bash", ...
    code: str

    @property
    def language(self) -> str:
        return self.info.split()[0] if self.info.split() else ""

    @property
    def no_run(self) -> bool:
        return self.info.split()[1:2] == ["no-run:"] or self.info.split()[1:2] == ["no-run"]


def code_blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a markdown page (indented ones, as in lists, included)."""
    blocks: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j][indent:] if lines[j][:indent].isspace() else lines[j])
            j += 1
        assert j < len(lines), f"{page.name}:{i + 1}: code block never closed"
        blocks.append(Block(page, i + 1, opening["info"].strip(), "\n".join(body) + "\n"))
        i = j + 1
    return blocks


def python_blocks(page: Path) -> list[Block]:
    return [block for block in code_blocks(page) if block.language == "python"]


def test_the_pages_are_found():
    names = {page.name for page in PAGES}
    assert {"README.md", "api.md", "replay.md", "training.md"} <= names
    assert python_blocks(ROOT / "README.md"), "the README's example is a python block"


def test_blocks_that_do_not_run_say_why():
    for page in PAGES:
        for block in python_blocks(page):
            if block.no_run:
                why = block.info.partition("no-run:")[2].strip()
                assert why, f"{page.name}:{block.line}: write ```python no-run: <why>"


def test_the_parser_reads_fences(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "Text.\n\n```python\na = 1\n```\n\n- a list item:\n\n  ```python\n  b = a + 1\n"
        "    c = b\n  ```\n\n```bash\npip install .\n```\n\n````python no-run: needs a GPU\n"
        "```\nd = 4\n````\n",
        encoding="utf-8",
    )
    blocks = code_blocks(page)
    assert [(b.line, b.language, b.no_run) for b in blocks] == [
        (3, "python", False),
        (9, "python", False),
        (14, "bash", False),
        (18, "python", True),
    ]
    assert blocks[1].code == "b = a + 1\n  c = b\n"  # the list's indentation removed
    assert blocks[3].code == "```\nd = 4\n"  # a longer fence can hold a shorter one


def stated_outputs(code: str) -> list[str]:
    return [m["value"] for line in code.splitlines() if (m := STATED_OUTPUT.match(line))]


def test_stated_outputs_are_read():
    code = (
        'print(f"{g:.4f}")  # 24.7041, the outcome\nprint(x)  # -1.5e-3\nprint(y)  # not a number\n'
    )
    assert stated_outputs(code) == ["24.7041", "-1.5e-3"]


@pytest.mark.parametrize(
    "page", [page for page in PAGES if python_blocks(page)], ids=lambda page: page.name
)
def test_python_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"docs.{page.stem}"}
    ran = 0
    for block in python_blocks(page):
        if block.no_run:
            continue
        # Padded with blank lines so that a traceback points at the page's own line numbers.
        source = "\n" * block.line + block.code
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(source, str(page), "exec"), namespace)
        expected = stated_outputs(block.code)
        if expected:
            where = f"{page.name}:{block.line}"
            assert printed.getvalue().splitlines() == expected, f"{where}: printed output differs"
        ran += 1
    assert ran, f"{page.name}: every python block is marked no-run"


EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


@pytest.mark.skipif(not EXAMPLES, reason="examples/ is not beside tests/")
@pytest.mark.parametrize("script", EXAMPLES, ids=lambda path: path.name)
def test_examples_run(script, tmp_path):
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert done.returncode == 0, done.stderr
    expected = stated_outputs(script.read_text(encoding="utf-8"))
    if expected:
        assert done.stdout.splitlines() == expected, f"{script.name}: printed output differs"
