"""Case g: one training step of a small CNN, portable_nn against PyTorch eager and JAX; and its memory.

Batch 64 of synthetic 3 x 32 x 32 float32 images, Conv2D(3, 32, 3, padding=1) ->
ReLU -> MaxPool2D(2) -> Conv2D(32, 64, 3, padding=1) -> ReLU -> MaxPool2D(2) ->
Flatten -> Linear(4096, 10), softmax cross-entropy, SGD(lr=0.01). Candidates,
timed interleaved in this one process from the same initial params (see :mod:`._cnn`):

1. portable_nn on NumPy via ``pnn.compile_step`` (im2col convs, hand-written backprop);
2. PyTorch eager, autograd + ``torch.optim.SGD``, with as many threads as NumPy's BLAS;
3. portable_nn's same portable step on torch (CPU tensors), for comparison, without a target;
4. portable_nn on JAX (``compile_step`` jits the portable code), and a hand-written JAX step
   (``lax.conv_general_dilated``, ``lax.reduce_window``, ``jax.value_and_grad``, jitted);
5. with ``--device-backend SPEC`` (``cupy``, ``torch:cuda``...): portable_nn on that backend, and
   PyTorch eager on CUDA when torch sees a GPU; goal for CuPy and torch: within 2x of it.

Targets: portable_nn on NumPy within 2x of PyTorch eager CPU; on JAX within 1.2x
of the hand-written JAX step. Memory, on NumPy: each conv's im2col buffer
``(N, C, kh*kw, OH, OW)`` at most kernel area x input size; tracemalloc's peak
over one conv forward + backward within 4x that; and the RSS of ``pnn.fit``
flat across epochs (no growth after epoch 2, the warm-up, beyond allocator noise).
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from portable_nn import fit, get_backend
from portable_nn.losses import softmax_cross_entropy
from portable_nn.optim import SGD

from ._cnn import LR, cnn_model, cnn_problem, flops, im2col_memory, images, jax_step, torch_step
from ._common import Config, on_device, ratio, rivals, speed_target
from ._machine import RssPerEpoch
from ._result import CaseResult, Target
from ._steps import pnn_step, step_table, time_checked

__all__ = ["KEY", "MEMORY", "SIZES", "run"]

KEY = "g"
# batch, image size, channels of the two convs
SIZES = {"full": (64, 32, 32, 64), "quick": (64, 32, 32, 64), "tiny": (8, 8, 4, 8)}
# rows of the pnn.fit run, and its epochs
MEMORY = {"full": (640, 5), "quick": (256, 4), "tiny": (32, 3)}  # >= 3 epochs
CHECK_STEPS = 3
RSS_TOLERANCE_MIB = 4.0  # allocator noise; one step's leaked im2col buffers alone are ~19 MiB
PEAK_BOUND = 4.0  # cols kept for backward + dcols, plus output-sized arrays

PNN, TORCH, JAX, TORCH_CUDA = "portable_nn (compile_step)", "torch eager", "jax by hand (jit)", "torch eager (cuda)"
PNN_JAX, PNN_TORCH = "portable_nn on jax (compile_step: jax.jit)", on_device("torch")


def run(config: Config) -> CaseResult:
    """Time the candidates, check their losses agree, then measure im2col memory and fit's RSS."""
    batch, size, c1, c2 = SIZES[config.profile]
    result = CaseResult(
        KEY,
        f"CNN training step: 3x{size}x{size} -> conv{c1} -> pool -> conv{c2} -> pool -> linear 10, "
        f"batch {batch}, float32, softmax CE, SGD(lr=0.01)",
    )
    found = rivals(config, result, torch=TORCH, jax=JAX, cuda=TORCH_CUDA)
    torch, jax, devices, torch_name = found.torch, found.jax, found.devices, found.torch_name
    prob = cnn_problem(batch, size, c1, c2)
    builders = [(PNN, partial(pnn_step, prob, PNN))]
    if torch is not None:
        builders.append((torch_name, partial(torch_step, prob, torch, torch_name)))
        devices = {PNN_TORCH: get_backend("torch"), **devices}  # the same portable step on torch tensors
    if jax is not None:
        builders.append((JAX, partial(jax_step, prob, jax, JAX)))
        devices = {PNN_JAX: get_backend("jax"), **devices}
    builders += [(label, partial(pnn_step, prob, label, be)) for label, be in devices.items()]
    if found.cuda is not None:
        builders.append((TORCH_CUDA, partial(torch_step, prob, torch, TORCH_CUDA, found.cuda)))
    timings, losses = time_checked(builders, config, result, desc="g: cnn step", check_steps=CHECK_STEPS)
    work = flops(batch, size, c1, c2)
    versus = {"ratio": ("vs torch eager", torch_name), "ratio_jax": ("vs jax by hand", JAX)}
    step_table(result, timings, losses, ref=PNN, versus=versus, flops=work, check_steps=CHECK_STEPS)
    result.targets = [
        speed_target(timings, "portable_nn on NumPy within 2x of PyTorch eager CPU",
                     "t(portable_nn)/t(torch eager)", PNN, torch_name, "<=", 2.0,
                     note=_why(timings, PNN, torch_name, 2.0, "a cProfile of the step (1 thread): 38% in tensordot "
                               "(the GEMMs), a third in im2col/col2im and pooling copies (stack, concat "
                               "padding, argmax); torch runs direct conv kernels")),
        speed_target(timings, "portable_nn on JAX within 1.2x of the hand-written JAX step",
                     "t(portable_nn on jax)/t(jax by hand)", PNN_JAX, JAX, "<=", 1.2,
                     note=_why(timings, PNN_JAX, JAX, 1.2, "the portable im2col (slices, stack, dot), jitted, "
                               "vs XLA's native conv")),
    ]
    for spec in config.device_backends:  # the GPU goal: 'not run' where either side did not run
        if spec.partition(":")[0] == "cupy" or spec.startswith("torch:cuda"):
            on = on_device(spec)
            result.targets.append(speed_target(
                timings, f"{on} within 2x of PyTorch eager CUDA", f"t({on})/t(torch eager cuda)",
                on, TORCH_CUDA, "<=", 2.0))
    result.note_agreement(f"{CHECK_STEPS} steps from the same params", 1e-3)
    result.notes.append(f"GFLOP/s counts the convs' and the head's multiply-adds ({work / 1e9:.3f} GFLOP/step)")

    memory = _memory(config, result, prob.model, prob.params, prob.batches[0][0], size, c1, c2, batch)
    result.settings = {
        "ratio": "median time / median time of PyTorch eager (CPU); ratio_jax: of the hand-written JAX step",
        "batch": batch,
        "image": [3, size, size],
        "channels": [c1, c2],
        "dtype": "float32",
        "model": repr(prob.model),
        "flops_per_step": work,
        "check_steps": CHECK_STEPS,
        "memory": memory,
    }
    return result


def _why(timings: dict[str, Any], num: str, den: str, bound: float, reason: str) -> str:
    """The reason shown next to a missed speed target ('' when met or not run)."""
    r = ratio(timings[num].median, timings[den].median) if num in timings and den in timings else None
    return "" if r is None or r <= bound else f"missed: {reason}"


def _memory(
    config: Config, result: CaseResult, model: Any, params: Any, X: Any, size: int, c1: int, c2: int, batch: int
) -> dict[str, Any]:
    """im2col buffers vs kernel area x input, and fit's RSS per epoch; targets and notes into ``result``."""
    convs = im2col_memory(model, params, X)
    for m in convs:
        result.notes.append(
            f"{m.layer} on {m.input_shape}: im2col buffer {m.cols / 2**20:.2f} MiB = {m.cols_ratio:.2f} x "
            f"kernel area x input ({m.bound / 2**20:.2f} MiB); traced peak of forward + backward "
            f"{m.traced_peak / 2**20:.2f} MiB = {m.peak_ratio:.2f} x"
        )
    result.targets.append(Target(
        "each conv's im2col buffer at most kernel area x its input (from the shapes)",
        "max bytes(cols)/(kh*kw*bytes(X))", max(m.cols_ratio for m in convs), "<=", 1.0))
    result.targets.append(Target(
        f"traced peak of one conv forward + backward within {PEAK_BOUND:g}x kernel area x input (NumPy)",
        "max peak/(kh*kw*bytes(X))", max(m.peak_ratio for m in convs), "<=", PEAK_BOUND,
        note="cols (kept for backward) and dcols, plus output-sized arrays"))

    rows, epochs = MEMORY[config.profile]
    Xf, yf = images(rows, size, seed=1)
    Xv, yv = images(max(batch, rows // 8), size, seed=2)
    fit_model = cnn_model(size, c1, c2)
    probe = RssPerEpoch()
    t0 = time.perf_counter()
    fit(fit_model, fit_model.init(seed=0, backend="numpy", dtype="float32"), Xf, yf,
        loss=softmax_cross_entropy, optimizer=SGD(lr=LR), epochs=epochs, batch_size=batch, seed=0,
        validation_data=(Xv, yv), progress=config.progress, callbacks=[probe])
    fit_s = time.perf_counter() - t0
    # after a warm-up epoch, as case e: the allocator's first reuse of freed im2col-sized blocks
    # (glibc raises its mmap threshold) may add a one-off step between epochs 1 and 2
    growth = max(probe.rss[2:]) - probe.rss[1] if len(probe.rss) > 2 else None
    if not probe.rss:
        result.skipped["RSS per epoch"] = "no /proc/self/statm on this system"
    result.targets.append(Target(
        f"pnn.fit's RSS flat after epoch 2 (tolerance {RSS_TOLERANCE_MIB:g} MiB)",
        "max RSS after epochs 3.. - RSS after epoch 2 (MiB)", growth, "<=", RSS_TOLERANCE_MIB))
    result.notes.append(
        f"pnn.fit on NumPy, {rows} rows, batch {batch}, {epochs} epochs in {fit_s:.2f} s; RSS after each "
        f"epoch (MiB): {', '.join(f'{r:.1f}' for r in probe.rss) or '-'}"
    )
    return {
        "im2col": [
            {"layer": m.layer, "input_shape": list(m.input_shape), "cols_bytes": m.cols,
             "kernel_area_x_input_bytes": m.bound, "traced_peak_bytes": m.traced_peak}
            for m in convs
        ],
        "fit_rows": rows,
        "fit_epochs": epochs,
        "fit_s": fit_s,
        "rss_per_epoch_mib": probe.rss,
        "rss_growth_mib": growth,
        "rss_tolerance_mib": RSS_TOLERANCE_MIB,
        "peak_bound": PEAK_BOUND,
    }

