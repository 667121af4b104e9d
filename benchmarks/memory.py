"""Case e: memory of ``pnn.fit`` on case a's model: RSS after every epoch, and the peak.

784-512-512-10 MLP, batch 256, float32, SGD(lr=0.01), synthetic data (seeded
inputs, labels from a random linear teacher), several epochs in one
``pnn.fit`` call. The resident set size is read from ``/proc/self/statm``
after each epoch (from inside the loss, when ``fit`` evaluates the small
validation set at the end of the epoch), and the peak from ``ru_maxrss``.
After warm-up (epoch 2) the RSS must not grow: memory that grows with every
epoch is a leak.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from portable_nn import Linear, ReLU, Sequential, fit
from portable_nn.losses import softmax_cross_entropy
from portable_nn.optim import SGD

from ._common import Config, setup_threads
from ._machine import current_rss_mib, peak_rss_mib
from ._result import CaseResult, Column, Target

__all__ = ["KEY", "SIZES", "TOLERANCE_MIB", "run"]

KEY = "e"
# hidden, batch, training rows, epochs
SIZES = {"full": (512, 256, 8192, 8), "quick": (512, 256, 4096, 5), "tiny": (32, 16, 128, 3)}
VALIDATION_ROWS = 256
TOLERANCE_MIB = 2.0  # allocator noise: a leak of a step's arrays per epoch would exceed it


def _data(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, 784)).astype(np.float32)
    teacher = rng.standard_normal((784, 10)).astype(np.float32)
    return X, np.argmax(X @ teacher, axis=1).astype(np.int64)


def run(config: Config) -> CaseResult:
    """Train with ``pnn.fit``, reading RSS per epoch; target: no growth after epoch 2."""
    hidden, batch, rows, epochs = SIZES[config.profile]
    result = CaseResult(
        KEY,
        f"memory of pnn.fit: 784-{hidden}-{hidden}-10, batch {batch}, {rows} rows, {epochs} epochs, float32",
    )
    result.environment = {"threads": setup_threads()}
    X, y = _data(rows)
    Xv, yv = _data(VALIDATION_ROWS, seed=1)
    model = Sequential(Linear(784, hidden), ReLU(), Linear(hidden, hidden), ReLU(), Linear(hidden, 10))
    params = model.init(seed=0, backend="numpy", dtype="float32")
    steps_per_epoch = -(-rows // batch)
    at_eval: list[tuple[float, float]] = []
    at_step: list[tuple[float, float]] = []
    seen = {"train": 0}

    def sample() -> tuple[float, float]:
        return current_rss_mib() or 0.0, peak_rss_mib() or 0.0

    def loss(Y: Any, T: Any) -> Any:
        if T is yv or getattr(T, "base", None) is yv:  # fit's end-of-epoch validation
            if len(at_eval) < seen["train"] // steps_per_epoch:
                at_eval.append(sample())
        else:
            if seen["train"] and seen["train"] % steps_per_epoch == 0:
                at_step.append(sample())  # fallback: first step of the next epoch
            seen["train"] += 1
        return softmax_cross_entropy(Y, T)

    rss_before, peak_before = current_rss_mib(), peak_rss_mib()
    t0 = time.perf_counter()
    fit(
        model,
        params,
        X,
        y,
        loss=loss,
        optimizer=SGD(lr=0.01),
        epochs=epochs,
        batch_size=batch,
        seed=0,
        validation_data=(Xv, yv),
        progress=config.progress,
    )
    fit_s = time.perf_counter() - t0
    rss_after, peak_after = current_rss_mib(), peak_rss_mib()
    if len(at_eval) == epochs:
        samples, how = at_eval, "during the end-of-epoch validation"
    else:
        samples, how = [*at_step, sample()], "at the first step of the next epoch (last: after fit)"
    if rss_before is None:
        result.skipped["per-epoch RSS"] = "no /proc/self/statm on this system"
        samples = []
    per_epoch = [rss for rss, _ in samples]
    result.rows.append({"name": "before fit", "rss_mib": rss_before, "peak_mib": peak_before})
    for i, (rss, peak) in enumerate(samples):
        result.rows.append(
            {
                "name": f"after epoch {i + 1}",
                "epoch": i + 1,
                "rss_mib": rss,
                "peak_mib": peak,
                "delta_vs_epoch2_mib": rss - per_epoch[1] if len(per_epoch) > 1 and i >= 1 else None,
            }
        )
    result.rows.append({"name": "after fit", "rss_mib": rss_after, "peak_mib": peak_after})
    growth = max(per_epoch[2:]) - per_epoch[1] if len(per_epoch) > 2 else None
    result.columns = [
        Column("when", "name"),
        Column("RSS MiB", "rss_mib", "mib"),
        Column("vs epoch 2 MiB", "delta_vs_epoch2_mib", "mib"),
        Column("peak MiB (ru_maxrss)", "peak_mib", "mib"),
    ]
    result.targets = [
        Target(
            f"RSS does not grow after epoch 2 (tolerance {TOLERANCE_MIB:g} MiB)",
            "max RSS after epochs 3.. - RSS after epoch 2 (MiB)",
            growth,
            "<=",
            TOLERANCE_MIB,
        )
    ]
    result.notes += [
        f"RSS (/proc/self/statm) read {how}; peak = this process's ru_maxrss so far (imports and data included)",
        f"fit took {fit_s:.2f} s ({epochs * steps_per_epoch} steps)",
    ]
    result.settings = {
        "hidden": hidden,
        "batch": batch,
        "rows": rows,
        "epochs": epochs,
        "validation_rows": VALIDATION_ROWS,
        "tolerance_mib": TOLERANCE_MIB,
        "rss_source": how,
        "rss_before_fit_mib": rss_before,
        "rss_after_fit_mib": rss_after,
        "peak_rss_before_fit_mib": peak_before,
        "peak_rss_after_fit_mib": peak_after,
        "growth_after_epoch2_mib": growth,
        "fit_s": fit_s,
    }
    return result
