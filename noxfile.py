"""The test matrix: one session per backend, plus lint, typecheck, examples, docs and doctests.

    nox -l                         # list sessions (* marks those plain `nox` runs)
    nox                            # every default session that can run on this machine
    nox -s "tests(numpy)"          # one backend
    nox -s cupy                    # skips (exit 0) without a usable CUDA device
    nox -s docs                    # the documentation site, warnings as errors: docs/_build/html
    nox -s doctest                 # docstring examples and every Python block of the docs, 2 backends
    nox -s bench -- --quick        # the speed benchmarks: only when named (not in plain `nox`, nor CI)

Each tests session runs the whole suite on one backend via
PORTABLE_NN_TEST_BACKEND (see tests/conftest.py).
"""

from __future__ import annotations

import shutil
import subprocess

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False

PYTHON = "3.11"
TORCH = "torch==2.13.0"  # the CPU wheel of this version is on local disk; others download CUDA builds
JAX = "jax[cpu]"

# backend spec -> extra packages it needs
CPU_BACKENDS = {
    "numpy": [],
    "numpy-readonly": [],
    "array_api_strict": [],
    "array_api_strict:device1": [],
    "array_api_strict:no_float64": [],
    "torch": [TORCH],
    "jax": [JAX],
}


@nox.session(python=PYTHON)
@nox.parametrize("backend", list(CPU_BACKENDS))
def tests(session: nox.Session, backend: str) -> None:
    """The whole suite on one CPU backend."""
    session.install("-e", ".[test]", *CPU_BACKENDS[backend])
    session.run("pytest", "-q", *session.posargs, env={"PORTABLE_NN_TEST_BACKEND": backend})


@nox.session(python=PYTHON)
def cupy(session: nox.Session) -> None:
    """The suite on CuPy; skips with a reason (exit 0) where no CUDA device is usable."""
    if shutil.which("nvidia-smi") is None or subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode:
        session.skip("no CUDA device here (nvidia-smi missing or failing); the cupy session needs an NVIDIA GPU")
    session.install("-e", ".[test,cupy]")
    session.run("pytest", "-q", *session.posargs, env={"PORTABLE_NN_TEST_BACKEND": "cupy"})


@nox.session(python=PYTHON)
def dask(session: nox.Session) -> None:
    """Dask: streamed out-of-core data, data-parallel fit on a 2-worker LocalCluster (loopback): the gradient
    all-reduce between the workers (torch.distributed, gloo) and the hub; the example."""
    session.install("-e", ".[test,dask,zarr]")  # the dask extra brings torch==2.13.0 (its CPU wheel is local)
    session.run("pytest", "-q", "tests/test_dask.py", "tests/test_allreduce.py", *session.posargs,
                env={"PORTABLE_NN_TEST_BACKEND": "numpy"})
    session.run("python", "examples/dask_data_parallel.py", "--rows", "8192", "--hidden", "64", "--epochs", "1")


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff lint."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy on the library and the benchmarks."""
    session.install("-e", ".", "mypy>=1.10")
    session.run("mypy", "portable_nn")
    session.run("mypy", "benchmarks")


@nox.session(python=PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """The speed benchmarks, ``python -m benchmarks`` with the options after ``--`` (e.g. ``--quick --cases a,b``).

    Not a default session: they take minutes and measure, never assert. Installs the comparison
    libraries (PyTorch, JAX, scikit-learn); ``--backends`` picks among them.
    """
    session.install("-e", ".[sklearn]", TORCH, JAX)
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """The documentation site from a clean build: Sphinx with warnings as errors (-W --keep-going) and
    nitpicky cross-references (-n); the gallery runs every example small on NumPy; then
    docs/check_api.py checks that every public name has an entry. Open docs/_build/html/index.html."""
    session.install("-e", ".[docs]")
    for built in ("docs/_build", "docs/gallery", "docs/api/generated"):  # generated: never reuse a stale page
        shutil.rmtree(built, ignore_errors=True)
    env = {"PORTABLE_NN_BACKEND": "numpy"}
    session.run("sphinx-build", "-W", "--keep-going", "-n", "-q", "-b", "html", "docs", "docs/_build/html",
                *session.posargs, env=env)
    session.run("python", "docs/check_api.py", "docs/_build/html")


@nox.session(python=PYTHON)
@nox.parametrize("backend", ["numpy", "array_api_strict"])
def doctest(session: nox.Session, backend: str) -> None:
    """The examples in the docstrings (--doctest-modules) and every Python block of README.md and
    docs/**/*.md (docs/test_blocks.py), run as pasted on one default backend."""
    session.install("-e", ".[test,dask,zarr]")
    env = {"PORTABLE_NN_BACKEND": backend, "PORTABLE_NN_TEST_BACKEND": backend}
    session.run("pytest", "-q", "--doctest-modules", "portable_nn", "docs/test_blocks.py", *session.posargs, env=env)


@nox.session(python=PYTHON)
def examples(session: nox.Session) -> None:
    """Every example, quickly, on NumPy."""
    session.install("-e", ".[test]")
    session.run("python", "examples/seed_tutorial.py", "--steps", "20", silent=True)
    session.run("python", "examples/digits.py", "--epochs", "2")
    session.run("python", "examples/digits_cnn.py", "--epochs", "1", "--width", "8")
    session.run(
        "python", "examples/cpu_vs_gpu.py", "--backends", "numpy", "--seed-steps", "20",
        "--mlp-steps", "3", "--hidden", "32", "--batch", "16", "--repeats", "1",
    )
    session.run("python", "-m", "portable_nn", "compare", "--backends", "numpy", "--steps", "20")
    session.run("python", "examples/sklearn_pipeline.py", "--max-iter", "5", "--cv", "2", "--n-jobs", "1")
    session.run(
        "python", "examples/char_lm.py", "--steps", "5", "--epochs", "1", "--dim", "16", "--layers", "1",
        "--context", "16", "--sample", "40",
    )


