"""Every Python block of README.md and docs/**/*.md runs as pasted (``nox -s doctest``).

A fenced ``python`` block is run on its own, as a new file would be: in a fresh namespace
(``__name__ == "__main__"``), in an empty temporary folder, on the default backend
(``PORTABLE_NN_BACKEND``, set per session). When an ``output`` block follows it, what the code
prints must match that block (``...`` matches anything; whitespace is normalized, as in doctest).
A block that needs a library not installed here (torch, JAX, CuPy, dask-cuda) is skipped, naming
it. A block preceded by the line ``<!-- excerpt -->`` is a fragment the text explains and is not
run; nothing else is exempt.

    PORTABLE_NN_BACKEND=array_api_strict python -m pytest docs/test_blocks.py
"""

from __future__ import annotations

import ast
import contextlib
import doctest
import importlib.util
import io
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
PAGES = [p for p in PAGES if "_build" not in p.parts]
FENCE = re.compile(r"^(?P<fence>`{3,})(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.S | re.M)
EXCERPT = "<!-- excerpt -->"
CHECK = doctest.OutputChecker()
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@dataclass
class Block:
    page: Path
    line: int
    code: str
    output: str | None

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    fences = list(FENCE.finditer(text))
    found = []
    for i, fence in enumerate(fences):
        if fence.group("info").strip().split(" ")[0] != "python":
            continue
        before = text[: fence.start()].rstrip().splitlines()
        if before and before[-1].strip() == EXCERPT:
            continue
        output = None
        if i + 1 < len(fences) and fences[i + 1].group("info").strip() == "output":
            if not text[fence.end(): fences[i + 1].start()].strip():
                output = fences[i + 1].group("body")
        found.append(Block(page, text.count("\n", 0, fence.start()) + 1, fence.group("body"), output))
    return found


ALL = [b for page in PAGES for b in blocks(page)]
OPTIONAL = ("torch", "jax", "cupy", "dask_cuda")


def missing_modules(code: str) -> list[str]:
    names = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return sorted(n for n in names if importlib.util.find_spec(n) is None)


@pytest.mark.parametrize("block", ALL, ids=[b.id for b in ALL])
def test_block_runs_as_pasted(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = missing_modules(block.code)
    if missing:
        if set(missing) - set(OPTIONAL):
            pytest.fail(f"{block.id} imports {missing}, which the doctest session does not install")
        pytest.skip(f"needs {', '.join(missing)}, not installed here")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [f"{block.id}"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        # padded so that a traceback names the page's own line numbers (and shows them: it is the file)
        code = compile("\n" * block.line + block.code, str(block.page), "exec")
        exec(code, {"__name__": "__main__"})  # noqa: S102 (our own docs)
    if block.output is not None and not CHECK.check_output(block.output, out.getvalue(), FLAGS):
        pytest.fail(f"{block.id} printed\n{out.getvalue()}\nbut the page shows\n{block.output}")


def test_every_page_is_seen() -> None:
    assert (ROOT / "README.md") in PAGES and any(p.parent.name == "guide" for p in PAGES)
