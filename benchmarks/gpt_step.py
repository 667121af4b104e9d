"""Case j: one training step of a small GPT, portable_nn against PyTorch eager and JAX by hand; its memory.

2 pre-LayerNorm blocks, dim 128, 4 heads, context 128, batch 32, a character
vocabulary (Python's own documentation, ``pydoc_data.topics``), softmax
cross-entropy over every token, Adam (see :mod:`._gpt`). Candidates, timed
interleaved in this one process from the same initial params:

1. portable_nn on NumPy via ``pnn.compile_step`` (the hand-written backward of every layer);
2. the same architecture in PyTorch eager (autograd, ``scaled_dot_product_attention``, ``torch.optim.Adam``);
3. portable_nn on JAX (``compile_step`` jits the portable code) and the same GPT in JAX by hand
   (``jax.value_and_grad``, Adam written out, jitted);
4. with ``--device-backend SPEC``: portable_nn on that backend.

Targets: portable_nn on NumPy within 2x of PyTorch eager CPU; on JAX within 1.2x
of the hand-written JAX step. Memory: the attention probabilities each block
keeps for its backward pass, ``(batch, heads, seq, seq)`` (stated from the
shapes), and the RSS of ``pnn.fit`` flat across epochs.
"""

from __future__ import annotations

import time
from functools import partial

from portable_nn import fit, get_backend
from portable_nn.losses import softmax_cross_entropy
from portable_nn.optim import Adam

from ._common import Config, on_device, ratio, rivals, speed_target
from ._gpt import LR, attention_bytes, gpt_model, gpt_problem, jax_step, text_ids, torch_step
from ._machine import RssPerEpoch
from ._result import CaseResult, Target
from ._steps import pnn_step, step_table, time_checked

__all__ = ["KEY", "SIZES", "run"]

KEY = "j"
# batch, context, dim, heads, blocks
SIZES = {"full": (32, 128, 128, 4, 2), "quick": (32, 128, 128, 4, 2), "tiny": (4, 16, 16, 2, 2)}
MEMORY = {"full": (512, 4), "quick": (256, 3), "tiny": (32, 3)}  # rows of the fit run, its epochs (>= 3)
CHECK_STEPS = 2
RSS_TOLERANCE_MIB = 4.0

PNN, TORCH, JAX = "portable_nn (compile_step)", "torch eager", "jax by hand (jit)"
PNN_JAX = "portable_nn on jax (compile_step: jax.jit)"


def flops(batch: int, context: int, dim: int, vocab: int, blocks: int) -> int:
    """Multiply-adds x 2 x 3 (forward, and backward's two products) of the matmuls: per block the qkv,
    scores, weighted values, output projection and the 4x MLP; the head."""
    tokens = batch * context
    per_block = tokens * (3 * dim * dim + dim * dim + 8 * dim * dim) + 2 * batch * context * context * dim
    return 2 * 3 * (blocks * per_block + tokens * dim * vocab)


def run(config: Config) -> CaseResult:
    """Time the candidates, check their losses agree, then state attention's memory and measure fit's RSS."""
    batch, context, dim, heads, blocks = SIZES[config.profile]
    result = CaseResult(
        KEY,
        f"GPT training step: {blocks} blocks, dim {dim}, {heads} heads, context {context}, batch {batch}, "
        "character vocabulary, float32, softmax CE over tokens, Adam",
    )
    found = rivals(config, result, torch=TORCH, jax=JAX, cuda="torch eager (cuda)")
    torch, jax, devices, torch_name = found.torch, found.jax, found.devices, found.torch_name
    prob = gpt_problem(batch, context, dim, heads, blocks)
    builders = [(PNN, partial(pnn_step, prob, PNN))]
    if torch is not None:
        builders.append((torch_name, partial(torch_step, prob, torch, torch_name)))
    if jax is not None:
        builders.append((JAX, partial(jax_step, prob, jax, JAX)))
        devices = {PNN_JAX: get_backend("jax"), **devices}
    builders += [(label, partial(pnn_step, prob, label, be)) for label, be in devices.items()]
    timings, losses = time_checked(builders, config, result, desc="j: gpt step", check_steps=CHECK_STEPS)
    vocab = int(prob.params[0]["W"].shape[0])
    work = flops(batch, context, dim, vocab, blocks)
    versus = {"ratio": ("vs torch eager", torch_name), "ratio_jax": ("vs jax by hand", JAX)}
    step_table(result, timings, losses, ref=PNN, versus=versus, flops=work, check_steps=CHECK_STEPS)
    r_np = ratio(timings[PNN].median, timings[torch_name].median) if PNN in timings and torch_name in timings else None
    result.targets = [
        speed_target(timings, "portable_nn on NumPy within 2x of PyTorch eager CPU",
                     "t(portable_nn)/t(torch eager)", PNN, torch_name, "<=", 2.0,
                     note="" if r_np is None or r_np <= 2.0 else
                     "missed: NumPy runs each batched matmul of attention as a loop of small GEMMs and every "
                     "elementwise op as its own pass over memory; torch fuses attention (SDPA) and its ops"),
        speed_target(timings, "portable_nn on JAX within 1.2x of the hand-written JAX step",
                     "t(portable_nn on jax)/t(jax by hand)", PNN_JAX, JAX, "<=", 1.2),
    ]
    result.note_agreement(f"{CHECK_STEPS} steps from the same params", 1e-3)
    att = attention_bytes(batch, heads, context, blocks)
    result.notes.append(
        f"attention: each block keeps its (batch, heads, seq, seq) = ({batch}, {heads}, {context}, {context}) "
        f"probabilities for backward: {att / blocks / 2**20:.2f} MiB a block, {att / 2**20:.2f} MiB for "
        f"{blocks} blocks in float32 (the scores, made and dropped in the forward pass, as much again at a time)"
    )
    result.notes.append(f"GFLOP/s counts the matmuls ({work / 1e9:.3f} GFLOP/step)")
    rows, epochs = MEMORY[config.profile]
    X, Y, vocab_fit = text_ids(rows, context, seed=1)
    model = gpt_model(vocab_fit, context, dim, heads, blocks)
    probe = RssPerEpoch()
    t0 = time.perf_counter()
    fit(model, model.init(seed=0, backend="numpy", dtype="float32"), X, Y, loss=softmax_cross_entropy,
        optimizer=Adam(lr=LR), epochs=epochs, batch_size=batch, seed=0, progress=config.progress, callbacks=[probe])
    fit_s = time.perf_counter() - t0
    growth = max(probe.rss[2:]) - probe.rss[1] if len(probe.rss) > 2 else None
    result.targets.append(Target(
        f"pnn.fit's RSS flat after epoch 2 (tolerance {RSS_TOLERANCE_MIB:g} MiB)",
        "max RSS after epochs 3.. - RSS after epoch 2 (MiB)", growth, "<=", RSS_TOLERANCE_MIB))
    result.notes.append(
        f"pnn.fit on NumPy, {rows} windows, batch {batch}, {epochs} epochs in {fit_s:.2f} s; RSS after each epoch "
        f"(MiB): {', '.join(f'{r:.1f}' for r in probe.rss) or '-'}"
    )
    for spec in config.device_backends:
        result.notes.append(f"{on_device(spec)}: see its row (no target: the GPU goal is the CPU's ratio's)")
    result.settings = {
        "ratio": "median time / median time of PyTorch eager (CPU); ratio_jax: of the hand-written JAX step",
        "batch": batch, "context": context, "dim": dim, "heads": heads, "blocks": blocks, "vocab": vocab,
        "dtype": "float32", "flops_per_step": work, "check_steps": CHECK_STEPS,
        "attention_bytes": att, "rss_per_epoch_mib": probe.rss, "rss_growth_mib": growth,
    }
    return result
