"""The package's layout keeps its promises: tools use the public API only, nothing imports tools
at import time, nothing imports upward, and no module grows past about 400 lines."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "portable_nn"
# layer of each top-level part: a module may import only from its own layer or below
LAYERS = {
    "_version": 0, "_errors": 0, "_tree": 0, "_rng": 0, "backends": 1, "_check": 2, "_conform": 3,
    "layers": 3, "losses": 4, "optim": 4, "schedules": 4, "training": 5, "io": 5, "testing": 5, "generation": 5, "tools": 6,
    "sklearn": 6, "__main__": 7, "__init__": 7,
}


def _modules() -> list[tuple[str, Path]]:
    return [(".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts), p) for p in PACKAGE.rglob("*.py")]


def _imports(module: str, path: Path) -> list[str]:
    """Absolute names of the portable_nn modules (or module.name) that ``module`` imports."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("portable_nn"):
                found += [f"{target}.{a.name}" for a in node.names] if not node.module else [target]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("portable_nn")]
    return found


def _top(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


@pytest.mark.parametrize("part", ["tools", "sklearn"])
def test_tools_and_sklearn_import_only_public_modules_of_the_library(part):
    bad = []
    for module, path in _modules():
        if not module.startswith(f"portable_nn.{part}"):
            continue
        for target in _imports(module, path):
            if target.startswith(f"portable_nn.{part}"):
                continue
            private = [p for p in target.split(".")[1:] if p.startswith("_") and p != "__version__"]
            if private:
                bad.append(f"{module} imports {target}")
    assert not bad, f"{part}/ must use the public API only:\n" + "\n".join(bad)


def test_nothing_imports_upward():
    bad = []
    for module, path in _modules():
        mine = LAYERS[_top(module)]
        for target in _imports(module, path):
            theirs = LAYERS.get(_top(target))
            if theirs is not None and theirs > mine and _top(target) != _top(module):
                bad.append(f"{module} (layer {mine}) imports {target} (layer {theirs})")
    assert not bad, "\n".join(bad)


def test_import_portable_nn_does_not_import_tools():
    code = "import portable_nn, sys; print(sorted(m for m in sys.modules if m.startswith('portable_nn.tools')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("module, path", _modules(), ids=[m for m, _ in _modules()])
def test_no_module_is_over_400_lines(module, path):
    assert len(path.read_text().splitlines()) <= 400, f"{module}: split it by concept"


def test_fit_s_body_is_at_most_60_lines():
    """fit is the one engine's entry: checks, then the driver (issue 22); its body, without the docstring."""
    tree = ast.parse((PACKAGE / "training" / "_fit.py").read_text())
    (fit,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "fit"]
    body = fit.body[1:] if isinstance(fit.body[0], ast.Expr) and isinstance(fit.body[0].value, ast.Constant) else fit.body
    lines = body[-1].end_lineno - body[0].lineno + 1
    assert lines <= 60, f"fit's body is {lines} lines: move the work into training/_driver.py or its helpers"


def test_the_package_holds_no_benchmark_code_and_imports_none():
    """The benchmarks live in benchmarks/ at the top of the checkout (python -m benchmarks), not in portable_nn/."""
    inside = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if "bench" in p.name.lower()]
    assert not inside, f"benchmark modules inside the package: {inside}"
    for module, path in _modules():
        assert not [t for t in _imports(module, path) if "bench" in t], f"{module} imports benchmark code"
    code = "import portable_nn, sys; print(sorted(m for m in sys.modules if 'bench' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
