"""Case i: mixed precision: a training step in float32, bfloat16 and float16, and the memory saved.

For case a's MLP (784-512-512-10, batch 256), case g's CNN (batch 64, 3x32x32) and
case j's GPT (2 blocks, dim 128, context 128, batch 32),
``pnn.compile_step`` runs in float32 and with ``precision="bfloat16"`` /
``"float16"`` (float32 master params, forward and backward in the half
precision, the loss in float32; float16 with ``DynamicLossScale``) on every
backend that has the precision (``pnn.available_precisions``: NumPy float16;
torch and JAX both; ``--device-backend`` adds GPUs). Each is timed interleaved
with its backend's float32 step; the ratio is float32's time over this one's
(> 1: faster). On CPUs half precision is often *slower*: NumPy has no float16
BLAS (its matmuls loop in C), and torch's CPU bfloat16 kernels are fast only
on CPUs with AVX512-BF16 / AMX. The GPU figures come from ``scripts/gpu_check.sh``.

Memory: tracemalloc's peak over one NumPy forward + backward pass, float32 vs
float16 (the activations and the cast params are half the bytes), as measured,
not assumed.
"""

from __future__ import annotations

import tracemalloc
from dataclasses import replace
from functools import partial

from portable_nn import available_precisions, get_backend
from portable_nn.tools.problems import Problem
from portable_nn.training import StepSpec, forward_backward

from ._cnn import cnn_problem
from ._common import Config, ratio, timing_columns, timing_row
from ._gpt import gpt_problem
from ._mlp import mlp_problem
from ._result import CaseResult, Column
from ._steps import pnn_step, time_checked

__all__ = ["KEY", "SIZES", "run"]

KEY = "i"
SIZES = {"full": ((512, 256), (64, 32, 32, 64), (32, 128, 128, 4, 2)),
         "quick": ((512, 256), (64, 32, 32, 64), (32, 128, 128, 4, 2)),
         "tiny": ((32, 16), (8, 8, 4, 8), (4, 16, 16, 2, 2))}
PRECISIONS = ("float32", "bfloat16", "float16")
CHECK_STEPS = 2


def _label(problem: str, spec: str, precision: str) -> str:
    return f"{problem} on {spec} {precision}"


def _peak_bytes(prob: Problem, precision: str | None) -> int:
    """tracemalloc's peak over one forward + backward pass on NumPy (the first batch)."""
    X, T = prob.batches[0]
    spec = StepSpec(prob.model, prob.loss, None, precision=precision)
    forward_backward(spec, prob.params, X, T)  # warm up: first-call allocations aside
    tracemalloc.start()
    try:
        forward_backward(spec, prob.params, X, T)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def run(config: Config) -> CaseResult:
    """Time each (problem, backend, precision); ratios against the same backend's float32 step; memory."""
    (hidden, batch), (cbatch, size, c1, c2), gpt = SIZES[config.profile]
    result = CaseResult(KEY, "mixed precision: MLP, CNN and GPT training steps, float32 vs bfloat16 vs float16")
    # with --device-backend (scripts/gpu_check.sh) only those: the CPU figures come from a CPU run
    specs = list(config.device_backends) or ["numpy", *(lib for lib in ("torch", "jax") if lib in config.libraries)]
    problems = {"mlp": mlp_problem(hidden, batch), "cnn": cnn_problem(cbatch, size, c1, c2), "gpt": gpt_problem(*gpt)}
    builders, runs = [], []
    for spec in specs:
        try:
            be = get_backend(spec)
            have = available_precisions(be)
        except Exception as e:  # not installed here: say so, keep going
            result.skipped[spec] = str(e)
            continue
        for pname, prob in problems.items():
            for precision in PRECISIONS:
                if precision not in have:
                    continue
                label = _label(pname, spec, precision)
                builders.append((label, partial(pnn_step, prob, label, be, None if precision == "float32" else precision)))
                runs.append((pname, spec, precision, label))
    # NumPy's float16 steps take seconds (no half-precision BLAS): fewer, longer repeats than the profile's
    few = replace(config, repeats=config.case_repeats({"full": 3, "quick": 2, "tiny": 1}))
    timings, losses = time_checked(builders, few, result, desc="i: precision", check_steps=CHECK_STEPS)
    for pname, spec, _precision, label in runs:
        if label not in timings:
            continue
        base = timings.get(_label(pname, spec, "float32"))
        result.rows.append(timing_row(
            label, timings[label], speedup=ratio(base.median, timings[label].median) if base is not None else None,
            loss_check=losses.get(label),
        ))
    result.columns = [
        *timing_columns("step"),
        Column("float32/this (same backend)", "speedup", "ratio"),
        Column(f"loss@{CHECK_STEPS}", "loss_check", "float"),
    ]
    for pname, prob in problems.items():
        f32, f16 = _peak_bytes(prob, None), _peak_bytes(prob, "float16")
        result.notes.append(
            f"{pname}: peak memory of one NumPy forward + backward (tracemalloc): float32 {f32 / 2**20:.2f} MiB, "
            f"float16 {f16 / 2**20:.2f} MiB ({f16 / f32:.2f}x)"
        )
        result.settings[f"{pname}_peak_bytes"] = {"float32": f32, "float16": f16}
    result.notes.append("vs float32 = float32's median time / this one's (> 1: faster); CPUs rarely have fast "
                        "half-precision kernels, GPUs do (scripts/gpu_check.sh measures them)")
    result.settings.update({"hidden": hidden, "batch": batch, "cnn": [cbatch, size, c1, c2], "gpt": list(gpt),
                            "backends": specs, "precisions": list(PRECISIONS)})
    return result
