"""Settings shared by every case, and small helpers: optional libraries and devices, threads, rows, columns."""

from __future__ import annotations

import importlib
import math
import os
import statistics
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from portable_nn import Backend, get_backend
from portable_nn.tools.timing import Timing

from ._interleaved import Candidate, time_interleaved
from ._machine import blas_threads, threadpools
from ._result import CaseResult, Column, Progress, Target

__all__ = [
    "LIBRARIES",
    "Config",
    "PROFILES",
    "Rivals",
    "checked_values",
    "device_backends",
    "device_speedup_goals",
    "error_text",
    "on_device",
    "optional",
    "paired_ratio",
    "ratio",
    "relative_dev",
    "rivals",
    "run_candidates",
    "setup_threads",
    "speed_target",
    "timing_columns",
    "timing_row",
    "torch_cuda",
]

# comparison libraries a case may use besides NumPy (the reference, always run); --backends picks among them
LIBRARIES = ("torch", "jax", "sklearn")
_IMPORT = {"torch": "torch", "jax": "jax", "sklearn": "sklearn"}
_PIP = {"torch": "torch", "jax": "'jax[cpu]'", "sklearn": "scikit-learn"}

# per profile: timed repeats, untimed warm-up calls, and the target seconds per timed block
PROFILES: dict[str, dict[str, Any]] = {
    "full": {"repeats": 7, "warmup": 3, "block_s": 0.3},
    "quick": {"repeats": 7, "warmup": 2, "block_s": 0.2},
    "tiny": {"repeats": 1, "warmup": 1, "block_s": 0.002},  # smoke tests only: numbers mean nothing
}


@dataclass(frozen=True)
class Config:
    """How one case runs.

    Attributes:
        profile: ``"full"``, ``"quick"`` or ``"tiny"`` (each case sizes itself from it).
        repeats, warmup, block_s: see :func:`benchmarks._interleaved.time_interleaved`.
        explicit_repeats: ``repeats`` was asked for (``--repeats``), not the profile's default.
        libraries: comparison libraries allowed (subset of :data:`LIBRARIES`).
        progress: tqdm bar on stderr; None shows it only when stderr is a terminal.
        device_backends: portable_nn backend specs (``cupy``, ``torch:cuda``, ``jax:gpu``...) that
            cases a, b, c and g also run portable_nn on, next to PyTorch eager on CUDA (``--device-backend``).
    """

    profile: str = "full"
    repeats: int = 7
    warmup: int = 3
    block_s: float = 0.3
    libraries: frozenset[str] = field(default_factory=lambda: frozenset(LIBRARIES))
    progress: bool | None = None
    explicit_repeats: bool = False
    device_backends: tuple[str, ...] = ()

    def case_repeats(self, defaults: dict[str, int]) -> int:
        """Repeats for a case with its own per-profile ``defaults`` (fewer, longer runs); --repeats wins."""
        if self.explicit_repeats:
            return self.repeats
        return min(self.repeats, defaults.get(self.profile, self.repeats))

    @classmethod
    def for_profile(
        cls,
        profile: str,
        *,
        repeats: int | None = None,
        libraries: Sequence[str] | None = None,
        progress: bool | None = None,
        device_backends: Sequence[str] = (),
    ) -> Config:
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}.")
        p = PROFILES[profile]
        return cls(
            profile=profile,
            repeats=p["repeats"] if repeats is None else repeats,
            warmup=p["warmup"],
            block_s=p["block_s"],
            libraries=frozenset(LIBRARIES if libraries is None else libraries),
            progress=progress,
            explicit_repeats=repeats is not None,
            device_backends=tuple(dict.fromkeys(device_backends)),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "repeats": self.repeats,
            "warmup_calls": self.warmup,
            "block_s": self.block_s,
            "libraries": sorted(self.libraries),
            "device_backends": list(self.device_backends),
        }


def optional(name: str, config: Config, result: CaseResult, label: str) -> Any:
    """Import comparison library ``name`` if it is wanted and installed, else note why in ``result.skipped``."""
    if name not in config.libraries:
        result.skipped[label] = f"{name} not selected (--backends)"
        return None
    try:
        return importlib.import_module(_IMPORT[name])
    except ImportError as e:
        result.skipped[label] = f"{name} is not installed ({e}); pip install {_PIP[name]}"
        return None


def on_device(spec: str) -> str:
    """The label of portable_nn's candidate on backend ``spec``: ``"portable_nn on SPEC"``."""
    return f"portable_nn on {spec}"


def device_backends(config: Config, result: CaseResult) -> dict[str, Backend]:
    """``{on_device(spec): Backend}`` for each ``--device-backend`` that resolves; the others are skipped."""
    out: dict[str, Backend] = {}
    for spec in config.device_backends:
        try:
            out[on_device(spec)] = get_backend(spec)
        except Exception as e:  # not installed, no such device: say why, run the rest
            result.skipped[on_device(spec)] = error_text(e)
    return out


def torch_cuda(config: Config, result: CaseResult, torch: Any, label: str) -> Backend | None:
    """torch's CUDA backend for the ``label`` candidate, when there are device backends and torch sees CUDA.

    The first ``torch:cuda...`` spec among them picks the device; otherwise ``torch:cuda``.
    """
    if not config.device_backends:
        return None
    if torch is None:
        result.skipped.setdefault(label, "torch is not selected or not installed")
        return None
    if not torch.cuda.is_available():
        result.skipped[label] = "torch sees no CUDA device"
        return None
    spec = next((s for s in config.device_backends if s.startswith("torch:cuda")), "torch:cuda")
    try:
        return get_backend(spec)
    except Exception as e:
        result.skipped[label] = error_text(e)
        return None


@dataclass(frozen=True)
class Rivals:
    """What a case compares portable_nn with, as found here (what is missing is in ``result.skipped``).

    Attributes:
        torch, jax: the modules, or None when not selected (``--backends``) or not installed.
        devices: :func:`device_backends`; cuda: :func:`torch_cuda`.
        torch_name: the PyTorch CPU candidate's label with its thread count, ``"torch eager (2 threads)"``.
    """

    torch: Any
    jax: Any
    devices: dict[str, Backend]
    cuda: Backend | None
    torch_name: str


def rivals(config: Config, result: CaseResult, *, torch: str, jax: str, cuda: str) -> Rivals:
    """Import torch and JAX (labels ``torch`` and ``jax`` say whose candidates are skipped without them),
    resolve the device backends and torch's CUDA (label ``cuda``), give torch NumPy's BLAS thread
    count and record the threads in ``result.environment``."""
    torch_module = optional("torch", config, result, torch)
    jax_module = optional("jax", config, result, jax)
    devices = device_backends(config, result)
    cuda_backend = torch_cuda(config, result, torch_module, cuda)
    threads = setup_threads()
    result.environment = {"threads": threads}
    return Rivals(torch_module, jax_module, devices, cuda_backend, f"{torch} ({threads.get('torch_threads')} threads)")


def setup_threads() -> dict[str, Any]:
    """Give torch as many intra-op threads as NumPy's BLAS has; return the thread facts for the report.

    Only touches torch when it is already imported.
    """
    import sys

    n, source = blas_threads()
    info: dict[str, Any] = {"blas_threads": n, "blas_threads_source": source, "cpu_count": os.cpu_count()}
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
        info["torch_threads"] = torch.get_num_threads()
        info["torch_interop_threads"] = torch.get_num_interop_threads()
    info["threadpools"] = threadpools()
    return info


def timing_row(name: str, timing: Timing, **extra: Any) -> dict[str, Any]:
    """A table row: the median, spread and page faults of ``timing`` plus ``extra`` columns."""
    return {
        "name": name,
        "median_s": timing.median,
        "spread": timing.spread,
        "faults_per_step": timing.median_faults,
        **extra,
        "timing": timing.as_dict(),
    }


def timing_columns(per: str) -> list[Column]:
    """The first columns of a table of timed candidates: name, median time per ``per``, spread."""
    return [Column("candidate", "name"), Column(f"median/{per}", "median_s", "time"), Column("spread", "spread", "pct")]


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, None when either is missing or the denominator is not positive."""
    if numerator is None or denominator is None or not denominator > 0:
        return None
    value = numerator / denominator
    return value if math.isfinite(value) else None


def relative_dev(value: float | None, reference: float | None) -> float | None:
    """``|value - reference| / |reference|``, None when either is missing or the reference is 0."""
    if value is None or not reference:
        return None
    return abs(value - reference) / abs(reference)


def paired_ratio(numerator: Timing | None, denominator: Timing | None) -> float | None:
    """Median over repeats of the per-repeat time ratio (repeat r of one candidate over repeat r of the other).

    Candidates timed round-robin share each repeat's machine state, so pairing
    them cancels slow drifts that move both; None without equal repeat counts.
    """
    if numerator is None or denominator is None or len(numerator.per_step) != len(denominator.per_step):
        return None
    pairs = [a / b for a, b in zip(numerator.per_step, denominator.per_step, strict=True) if b > 0]
    return statistics.median(pairs) if pairs else None


def speed_target(
    timings: dict[str, Timing],
    goal: str,
    ratio_name: str,
    num: str,
    den: str,
    op: str,
    bound: float,
    *,
    note: str = "",
    valid: bool = True,
) -> Target:
    """A :class:`Target` on ``t(num)/t(den)`` with its paired ratio; 'not run' when either did not run."""
    t_num = timings[num].median if num in timings else None
    t_den = timings[den].median if den in timings else None
    paired = paired_ratio(timings.get(num), timings.get(den))
    return Target(goal, ratio_name, ratio(t_num, t_den), op, bound, note, valid, paired)


def device_speedup_goals(config: Config) -> list[tuple[str, str, str]]:
    """``(label, goal, ratio name)`` per ``--device-backend``: b and c's >= 2x over PyTorch eager CUDA."""
    return [
        (on, f"{on} >= 2x faster than PyTorch eager CUDA", f"t(torch eager cuda)/t({on})")
        for on in map(on_device, config.device_backends)
    ]


def error_text(e: BaseException) -> str:
    """``Type: message`` and the innermost frame, for a failed candidate."""
    tb = traceback.extract_tb(e.__traceback__)
    where = f" at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno}" if tb else ""
    return f"{type(e).__name__}: {e}{where}"


def checked_values(
    checks: Mapping[str, Callable[[], float]], timings: dict[str, Timing], result: CaseResult, what: str
) -> dict[str, float]:
    """``{name: checks[name]()}`` for the candidates that were timed; a check that raises is recorded
    in ``result.failed`` as ``"NAME (what)"`` and left out."""
    values: dict[str, float] = {}
    for name, check in checks.items():
        if name in timings:
            try:
                values[name] = check()
            except Exception as e:
                result.failed[f"{name} ({what})"] = error_text(e)
    return values


def run_candidates(
    builders: Sequence[tuple[str, Callable[[], Candidate]]],
    config: Config,
    result: CaseResult,
    *,
    desc: str,
    calls: int | None = None,
    repeats: int | None = None,
    warmup: int | None = None,
    warmup_s: float | None = None,
    progress: Progress | None = None,
) -> dict[str, Timing]:
    """Build each candidate (a failure is recorded in ``result.failed``), then time them interleaved.

    Each candidate warms up for at least ``warmup_s`` seconds (default: one block's length).
    """
    candidates = []
    for label, build in builders:
        try:
            candidates.append(build())
        except Exception as e:  # one candidate failing to build must not stop the others
            result.failed[label] = error_text(e)
    if not candidates:
        return {}
    reps = config.repeats if repeats is None else repeats
    own = progress is None
    bar = Progress(config.progress, len(candidates) * (reps + 1), desc) if own else progress
    assert bar is not None
    try:
        return time_interleaved(
            candidates,
            repeats=reps,
            warmup=config.warmup if warmup is None else warmup,
            block_s=config.block_s,
            calls=calls,
            warmup_s=config.block_s if warmup_s is None else warmup_s,
            on_block=bar.update,
        )
    finally:
        if own:
            bar.close()
