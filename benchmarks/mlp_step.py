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

from functools import partial

from portable_nn import get_backend

from ._common import Config, on_device, rivals, speed_target
from ._mlp import flops, gemm_step, jax_step, mlp_problem, numpy_step, torch_step
from ._result import CaseResult
from ._steps import pnn_fit_step, pnn_step, step_table, time_checked

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
    hidden, batch = SIZES[config.profile]
    result = CaseResult(
        KEY,
        f"MLP training step 784-{hidden}-{hidden}-10, batch {batch}, float32, softmax CE, SGD(lr=0.01)",
    )
    found = rivals(config, result, torch=TORCH, jax=JAX, cuda=TORCH_CUDA)
    torch, jax, devices, torch_name = found.torch, found.jax, found.devices, found.torch_name
    prob = mlp_problem(hidden, batch)
    builders = [
        (PNN, partial(pnn_step, prob, PNN)),
        (FIT, partial(pnn_fit_step, prob, FIT)),
        (HAND, partial(numpy_step, prob, HAND)),
        (GEMM, partial(gemm_step, hidden, batch, GEMM)),
    ]
    if torch is not None:
        builders.append((torch_name, partial(torch_step, prob, torch, torch_name)))
    if jax is not None:
        builders.append((JAX, partial(jax_step, prob, jax, JAX)))
        devices = {PNN_JAX: get_backend("jax"), **devices}  # the same portable step, jitted
    builders += [(label, partial(pnn_step, prob, label, be)) for label, be in devices.items()]
    if found.cuda is not None:
        builders.append((TORCH_CUDA, partial(torch_step, prob, torch, TORCH_CUDA, found.cuda)))
    # and the same loss after CHECK_STEPS steps from the same params: they all compute one thing
    timings, losses = time_checked(builders, config, result, desc="a: mlp step", check_steps=CHECK_STEPS)
    work = flops(hidden, batch)
    step_table(result, timings, losses, ref=PNN, versus={"ratio": ("vs portable_nn", PNN)}, flops=work,
               check_steps=CHECK_STEPS)
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
        "ratio": "median time / median time of portable_nn (compile_step)",
        "hidden": hidden,
        "batch": batch,
        "dtype": "float32",
        "flops_per_step": work,
        "check_steps": CHECK_STEPS,
    }
    return result
