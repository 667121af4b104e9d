"""Run bench cases, each in its own process, and collect one report: tables, targets, JSON.

    from benchmarks import run_bench
    report = run_bench(["a", "b"], profile="quick")
    print(report.table())
    report.write_json("bench.json")

Each case runs start to finish in ONE process: by default a fresh child
process per case (``python -m benchmarks.child --case a ...``), so
one case's imports, thread pools, caches and peak memory do not leak into the
next; ``isolate=False`` runs them all in the calling process (tests). The
child writes its :class:`~benchmarks._result.CaseResult` as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from portable_nn.layers.base import check_int
from portable_nn.tools.environment import environment

from . import (
    cnn_step,
    dask_parallel,
    digits,
    gpt_step,
    memory,
    mlp_step,
    notebook,
    precision,
    scaling,
    sklearn_mlp,
)
from ._common import LIBRARIES, PROFILES, Config, error_text
from ._machine import BUSY_CORES, LoadMeter, blas_threads, busy, installed_versions, load_note, threadpools
from ._result import CaseResult, Target, json_safe

__all__ = ["CASES", "DEFAULT_CASES", "SCHEMA", "BenchReport", "Case", "run_bench", "run_case"]

SCHEMA = "portable_nn.bench/1"


@dataclass(frozen=True)
class Case:
    """A bench case: its module (``run(config) -> CaseResult``), a short title, one line for
    ``python -m benchmarks --help``, and whether it runs when no cases are named."""

    module: ModuleType
    title: str
    summary: str
    default: bool = True


CASES: dict[str, Case] = {
    "a": Case(mlp_step, "MLP training step",
              "one training step of a 784-512-512-10 MLP vs NumPy by hand, its matmuls alone, PyTorch, JAX"),
    "b": Case(notebook, "the notebook problem",
              "the teaching notebook's 3-2-1 net: microseconds per step, where overhead is everything"),
    "c": Case(digits, "digits end to end",
              "digits end to end: time to >= 0.97 test accuracy vs scikit-learn, PyTorch, NumPy by hand"),
    "d": Case(scaling, "scaling", "GFLOP/s of case a's step across widths and batch sizes vs the matmuls alone"),
    "e": Case(memory, "memory", "RSS of pnn.fit after every epoch, and the peak (no growth after epoch 2)"),
    "f": Case(sklearn_mlp, "scikit-learn estimators",
              "portable_nn.sklearn.MLPClassifier vs scikit-learn's, equal epochs on digits"),
    "g": Case(cnn_step, "CNN training step",
              "one training step of a small CNN vs PyTorch eager and JAX; im2col memory, fit's RSS"),
    "h": Case(dask_parallel, "data-parallel fit on Dask",
              "data-parallel fit on a 2-worker Dask cluster vs one process on the same cores", default=False),
    "j": Case(gpt_step, "GPT training step",
              "one training step of a 2-block GPT (dim 128, context 128) vs PyTorch eager and JAX; attention memory"),
    "i": Case(precision, "mixed precision",
              "MLP and CNN steps in float32 vs bfloat16 vs float16 on each backend; the memory half precision saves"),
}
DEFAULT_CASES = tuple(key for key, case in CASES.items() if case.default)
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the folder that holds benchmarks/
_DISTRIBUTIONS = ("numpy", "torch", "jax", "jaxlib", "scikit-learn", "threadpoolctl", "tqdm")
_DEVICE_DISTRIBUTIONS = ("cupy-cuda12x", "cupy-cuda13x", "jax-cuda12-plugin", "array-api-strict")


@dataclass
class BenchReport:
    """Every case's result, the settings, and where it ran."""

    cases: list[CaseResult]
    settings: dict[str, Any]
    environment: dict[str, Any]
    total_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def targets(self) -> list[tuple[str, Target]]:
        """``(case key, target)`` for every target of every case."""
        return [(c.key, t) for c in self.cases for t in c.targets]

    @property
    def failed(self) -> bool:
        """True when a case or a candidate raised."""
        return any(c.failed for c in self.cases)

    def summary(self) -> str:
        """The targets of all cases, one line each, then the counts."""
        lines = ["targets (ratios measured on this machine; see the load notes above):"]
        for key, t in self.targets:
            measured = "not run" if t.ratio is None else f"{t.ratio:.3g}"
            lines.append(
                f"  {key}. [{t.status:>7}] {t.goal}: {t.ratio_name} = {measured} (goal {t.op} {t.threshold:g})"
            )
        met = sum(t.met is True for _, t in self.targets)
        missed = sum(t.met is False for _, t in self.targets)
        not_run = sum(t.met is None for _, t in self.targets)
        lines.append(f"  {met} met, {missed} missed, {not_run} not run; total {self.total_s:.1f} s")
        loaded = [c.key for c in self.cases if busy(c.environment.get("load", {}))]
        if loaded:
            lines.append(
                f"  WARNING: other processes used > {BUSY_CORES} cores while case(s) {', '.join(loaded)} ran: "
                "their times and ratios are unreliable; rerun on a quiet machine"
            )
        return "\n".join(lines)

    def table(self) -> str:
        """Every case's table, then the target summary."""
        head = (
            f"portable_nn bench ({self.settings.get('profile')}): {self.environment.get('cpu')}, "
            f"{self.environment.get('cpu_count')} CPUs, BLAS threads {self.environment.get('blas_threads')}"
        )
        return "\n\n".join([head, *(c.table() for c in self.cases), self.summary(), *self.notes])

    def as_dict(self) -> dict[str, Any]:
        """Plain-JSON form: settings, environment, each case, and every target with its measured ratio."""
        return json_safe(
            {
                "schema": SCHEMA,
                "settings": self.settings,
                "environment": self.environment,
                "total_s": self.total_s,
                "cases": {c.key: c.as_dict() for c in self.cases},
                "targets": [{"case": key, **t.as_dict()} for key, t in self.targets],
                "busy_cases": [c.key for c in self.cases if busy(c.environment.get("load", {}))],
                "notes": self.notes,
            }
        )

    def write_json(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`as_dict` to ``path`` as strict JSON."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.as_dict(), f, indent=1, allow_nan=False)
            f.write("\n")


def run_case(key: str, config: Config) -> CaseResult:
    """Run case ``key`` in this process; an exception becomes a result with ``failed["case"]``.

    The result's settings start with ``config``'s, and ``elapsed_s`` is the case's wall time.
    """
    if key not in CASES:
        raise ValueError(f"unknown bench case {key!r}; choose from {', '.join(CASES)}.")
    meter = LoadMeter()
    start = time.perf_counter()
    try:
        result: CaseResult = CASES[key].module.run(config)
    except Exception as e:  # one case failing must not hide the others
        result = CaseResult(key, CASES[key].title, failed={"case": error_text(e)})
    result.elapsed_s = time.perf_counter() - start
    result.settings = {**config.as_dict(), **result.settings}
    load = meter.report()
    result.environment["load"] = load
    result.notes.append(load_note(load))
    return result


def _run_isolated(key: str, config: Config, threads: int | None) -> CaseResult:
    env = dict(os.environ)
    if threads is not None:
        env.update({var: str(threads) for var in _THREAD_VARS})
    # the child imports this package from where it is, whatever the working directory
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_REPO, env.get("PYTHONPATH")]))
    progress = {None: "auto", True: "on", False: "off"}[config.progress]
    with tempfile.TemporaryDirectory(prefix="pnn-bench-") as tmp:
        out = os.path.join(tmp, f"case-{key}.json")
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.child",
            "--case",
            key,
            "--profile",
            config.profile,
            *(["--repeats", str(config.repeats)] if config.explicit_repeats else []),
            "--libraries",
            ",".join(sorted(config.libraries)) or "-",
            "--progress",
            progress,
            *(["--device-backend", ",".join(config.device_backends)] if config.device_backends else []),
            "--out",
            out,
        ]
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=None, text=True, check=False)
        if proc.returncode == 0 and os.path.exists(out):
            with open(out, encoding="utf-8") as f:
                return CaseResult.from_dict(json.load(f))
    tail = (proc.stdout or "").strip().splitlines()[-3:]
    why = f"child process exited with status {proc.returncode} (its traceback, if any, is on stderr above)"
    return CaseResult(key, CASES[key].title, failed={"case": why + (f": {' | '.join(tail)}" if tail else "")})


def _limit_threads_here(threads: int) -> None:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        # only reaches libraries not loaded yet
        os.environ.update({var: str(threads) for var in _THREAD_VARS})
        return
    threadpool_limits(limits=threads)


def run_bench(
    cases: Sequence[str] = DEFAULT_CASES,
    *,
    profile: str = "full",
    libraries: Sequence[str] | None = None,
    repeats: int | None = None,
    isolate: bool = True,
    threads: int | None = None,
    progress: bool | None = None,
    device_backends: Sequence[str] = (),
    on_case: Callable[[CaseResult], None] | None = None,
) -> BenchReport:
    """Run the bench ``cases`` and collect their results.

    Args:
        cases: case letters (see :data:`CASES`; default: those with ``default=True``).
        profile: ``"full"``, ``"quick"`` (smaller, about two minutes) or ``"tiny"`` (smoke tests).
        libraries: comparison libraries to include among ``torch``, ``jax``,
            ``sklearn`` (NumPy always runs); None means all that are installed.
        repeats: timed repeats per candidate (None: the profile's).
        isolate: run each case in a fresh child process (default) or all in this one.
        threads: BLAS/OpenMP threads (None leaves them as they are); torch always gets NumPy's BLAS count.
        progress: tqdm bars on stderr; None shows them only when stderr is a terminal.
        device_backends: portable_nn backend specs, a list or one comma-separated string (``cupy``,
            ``torch:cuda``, ``jax:gpu``; ``torch``, ``array_api_strict`` for a dry run on a CPU) that
            cases a, b, c and g also run portable_nn on, next to PyTorch eager on CUDA when torch sees
            a GPU, with the GPU targets ('not run' where a side did not run).
        on_case: called with each case's result as soon as it is done (e.g. to print it).

    Returns:
        A :class:`BenchReport`.
    """
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise ValueError(f"unknown bench case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}.")
    libs = list(LIBRARIES if libraries is None else libraries)
    bad = [lib for lib in libs if lib not in LIBRARIES]
    if bad:
        raise ValueError(
            f"unknown libraries {', '.join(bad)}; choose from {', '.join(LIBRARIES)} (numpy always runs)."
        )
    if repeats is not None:
        check_int("run_bench", "repeats", repeats, 1)
    if isinstance(device_backends, str):  # "cupy,torch:cuda", as on the command line
        device_backends = [s for s in device_backends.split(",") if s]
    if threads is not None and not isolate:
        _limit_threads_here(threads)
    config = Config.for_profile(
        profile, repeats=repeats, libraries=libs, progress=progress, device_backends=device_backends
    )
    start = time.perf_counter()
    results = []
    for key in dict.fromkeys(cases):
        result = _run_isolated(key, config, threads) if isolate else run_case(key, config)
        results.append(result)
        if on_case is not None:
            on_case(result)
    n, source = blas_threads()
    env = environment()
    wanted = _DISTRIBUTIONS + (_DEVICE_DISTRIBUTIONS if config.device_backends else ())
    env["versions"] = {**installed_versions(wanted), **env["versions"]}
    env.update(blas_threads=n, blas_threads_source=source, threadpools=threadpools())
    settings = {
        "profile": profile,
        "cases": list(dict.fromkeys(cases)),
        "libraries": libs,
        "device_backends": list(config.device_backends),
        "repeats": config.repeats,
        "warmup_calls": config.warmup,
        "block_s": config.block_s,
        "isolated_processes": isolate,
        "threads": threads,
        "profile_defaults": PROFILES[profile],
    }
    report = BenchReport(results, settings, env, time.perf_counter() - start)
    report.notes.append(
        "timings: median over repeats of blocks timed round-robin across candidates, after warm-up; "
        "spread = interquartile range / median. A shared or busy machine inflates both: see each case's load note."
    )
    return report
