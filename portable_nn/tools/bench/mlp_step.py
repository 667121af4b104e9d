"""Case a: one training step of a medium MLP, portable_nn against hand-written code and other libraries.

784-512-512-10 ReLU MLP with biases, batch 256, float32, softmax cross-entropy,
SGD(lr=0.01). Candidates, timed interleaved in this one process:

1. portable_nn on NumPy via ``pnn.compile_step`` (the public fast path; the targets use it),
   and what ``pnn.fit`` runs per step (the step, then the NaN/inf check of the loss and new params);
2. the same step written by hand in plain NumPy (functional ``w = w - lr*g``);
3. the step's eight matmuls alone on preallocated arrays: the limit here;
4. PyTorch eager, autograd + ``torch.optim.SGD``, with as many threads as NumPy's BLAS;
5. a ``jax.jit`` step (``jax.value_and_grad`` + the SGD update), and portable_nn's own step on JAX
   (``compile_step`` jits the same portable code); the targets are evaluated for it too;
6. with ``--device-backend SPEC`` (e.g. ``cupy``, ``torch:cuda``, ``jax:gpu``): portable_nn's
   ``compile_step`` on that backend ("portable_nn on SPEC"), and PyTorch eager on CUDA when torch sees
   a GPU. Target: portable_nn on CuPy within 1.05x of PyTorch eager CUDA.

Minor page faults per step are counted too: fresh arrays every step mean
fresh pages from the OS unless the allocator reuses them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

from ...backends import get_backend
from ..timing import Candidate
from ._common import (
    Config,
    checked_values,
    device_backends,
    on_device,
    optional,
    ratio,
    run_candidates,
    setup_threads,
    speed_target,
    timing_row,
    torch_cuda,
)
from ._mlp import (
    Built,
    flops,
    gemm_step,
    jax_step,
    mlp_problem,
    numpy_step,
    pnn_fit_step,
    pnn_step,
    torch_step,
)
from ._result import CaseResult, Column

__all__ = ["KEY", "SIZES", "run"]

KEY = "a"
SIZES = {"full": (512, 256), "quick": (512, 256), "tiny": (32, 16)}
CHECK_STEPS = 3

PNN_JAX = "portable_nn on jax (compile_step: jax.jit)"
PNN, FIT, HAND, GEMM, TORCH, JAX, TORCH_CUDA = (
    "portable_nn (compile_step)",
    "portable_nn (fit's step)",
    "numpy by hand",
    "GEMM only (8 matmuls)",
    "torch eager",
    "jax jit",
    "torch eager (cuda)",
)


def run(config: Config) -> CaseResult:
    """Time the candidates; targets: faster than JAX and torch, at most 1.2x GEMM only."""
    start = time.perf_counter()
    hidden, batch = SIZES[config.profile]
    result = CaseResult(
        KEY,
        f"MLP training step 784-{hidden}-{hidden}-10, batch {batch}, float32, softmax CE, SGD(lr=0.01)",
    )
    torch = optional("torch", config, result, TORCH)
    jax = optional("jax", config, result, JAX)
    devices = device_backends(config, result)
    cuda = torch_cuda(config, result, torch, TORCH_CUDA)
    threads = setup_threads()
    result.environment = {"threads": threads}
    prob = mlp_problem(hidden, batch)
    torch_name = f"{TORCH} ({threads.get('torch_threads')} threads)"
    built: dict[str, Built] = {}

    def keep(name: str, make: Callable[[], Built]) -> tuple[str, Callable[[], Candidate]]:
        def build() -> Candidate:
            built[name] = make()
            return built[name].candidate

        return name, build

    builders = [
        keep(PNN, lambda: pnn_step(prob, PNN)),
        keep(FIT, lambda: pnn_fit_step(prob, FIT)),
        keep(HAND, lambda: numpy_step(prob, HAND)),
        keep(GEMM, lambda: gemm_step(hidden, batch, GEMM)),
    ]
    if torch is not None:
        builders.append(keep(torch_name, lambda: torch_step(prob, torch, torch_name)))
    if jax is not None:
        builders.append(keep(JAX, lambda: jax_step(prob, jax, JAX)))
        devices = {PNN_JAX: get_backend("jax"), **devices}  # the same portable step, jitted
    for label, be in devices.items():
        builders.append(keep(label, partial(pnn_step, prob, label, be)))
    if cuda is not None:
        builders.append(keep(TORCH_CUDA, lambda: torch_step(prob, torch, TORCH_CUDA, cuda)))
    timings = run_candidates(builders, config, result, desc="a: mlp step")

    # the same loss after CHECK_STEPS steps from the same params: they all compute one thing
    checks = {name: partial(b.loss_after, CHECK_STEPS) for name, b in built.items() if b.loss_after is not None}
    losses = checked_values(checks, timings, result, "loss check")
    ref_loss = losses.get(PNN)
    t_pnn = timings[PNN].median if PNN in timings else None
    work = flops(hidden, batch)
    for name, timing in timings.items():
        loss = losses.get(name)
        result.rows.append(
            timing_row(
                name,
                timing,
                ratio=ratio(timing.median, t_pnn),
                gflops=work / timing.median / 1e9 if timing.median > 0 else None,
                loss_check=loss,
                loss_dev=(abs(loss - ref_loss) / abs(ref_loss) if loss is not None and ref_loss else None),
            )
        )
    result.columns = [
        Column("candidate", "name"),
        Column("median/step", "median_s", "time"),
        Column("spread", "spread", "pct"),
        Column("vs portable_nn", "ratio", "ratio"),
        Column("GFLOP/s", "gflops", "gflops"),
        Column("faults/step", "faults_per_step", "int"),
        Column(f"loss@{CHECK_STEPS}", "loss_check", "float"),
    ]

    result.targets = [  # for portable_nn on NumPy, and on JAX (the same step, jitted) where it ran
        target
        for who, name in (("portable_nn", PNN), ("portable_nn on JAX", PNN_JAX))
        if name == PNN or name in timings
        for target in (
            speed_target(timings, f"{who} faster than the JAX jit step", f"t({who})/t(jax jit)",
                         name, JAX, "<", 1.0),
            speed_target(timings, f"{who} faster than PyTorch eager", f"t({who})/t(torch eager)",
                         name, torch_name, "<", 1.0),
            speed_target(timings, f"{who} at most 1.2x the GEMM-only time", f"t({who})/t(GEMM only)",
                         name, GEMM, "<=", 1.2),
        )
    ]
    # the GPU goal, for CuPy: 'not run' where it or torch's CUDA did not run
    for on in [on_device(spec) for spec in config.device_backends if spec.partition(":")[0] == "cupy"]:
        goal, name = f"{on} within 1.05x of PyTorch eager CUDA", f"t({on})/t(torch eager cuda)"
        result.targets.append(speed_target(timings, goal, name, on, TORCH_CUDA, "<=", 1.05))
    result.note_agreement(f"{CHECK_STEPS} steps from the same params", 1e-3)
    result.notes.append(
        f"GFLOP/s counts only the 8 matmuls ({work / 1e9:.3f} GFLOP/step); faults/step: minor page faults"
    )
    result.settings = {
        **config.as_dict(),
        "ratio": "median time / median time of portable_nn (compile_step)",
        "hidden": hidden,
        "batch": batch,
        "dtype": "float32",
        "flops_per_step": work,
        "check_steps": CHECK_STEPS,
    }
    result.elapsed_s = time.perf_counter() - start
    return result
