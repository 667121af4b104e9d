"""Case d: how close portable_nn's training step gets to the matmuls alone, across sizes.

The 784-H-H-10 step of case a for hidden widths 64...2048 at batch 256, and
batches 32...2048 at width 512. For each size, portable_nn (``compile_step``
on NumPy) and the step's eight matmuls alone are timed interleaved; both
rates count the same work, ``2 m n k`` per matmul, so their ratio is the
share of the time the step spends in GEMM.
"""

from __future__ import annotations

from collections.abc import Callable

from ._common import Config, paired_ratio, run_candidates, setup_threads, timing_row
from ._interleaved import Candidate
from ._mlp import flops, gemm_step, mlp_problem
from ._result import CaseResult, Column, Progress
from ._steps import pnn_step

__all__ = ["KEY", "SIZES", "run"]

KEY = "d"
_WIDTHS = [(h, 256) for h in (64, 128, 256, 512, 1024, 2048)]
_BATCHES = [(512, b) for b in (32, 64, 128, 256, 512, 1024, 2048)]
SIZES: dict[str, list[tuple[int, int]]] = {
    "full": list(dict.fromkeys(_WIDTHS + _BATCHES)),  # (hidden, batch); 512 x 256 once
    "quick": [(128, 256), (512, 256), (2048, 256), (512, 64), (512, 1024)],
    "tiny": [(16, 8), (32, 8)],
}
REPEATS = {"full": 5, "quick": 3, "tiny": 1}
PNN, GEMM = "portable_nn", "GEMM only"


def run(config: Config) -> CaseResult:
    """portable_nn GFLOP/s and its ratio to the GEMM-only rate for each (hidden, batch)."""
    sizes = SIZES[config.profile]
    repeats = config.case_repeats(REPEATS)
    result = CaseResult(
        KEY, "scaling of the 784-H-H-10 step: portable_nn GFLOP/s vs the 8 matmuls alone (float32)"
    )
    result.environment = {"threads": setup_threads()}
    with Progress(config.progress, len(sizes) * 2 * (repeats + 1), "d: scaling") as bar:
        for hidden, batch in sizes:
            prob = mlp_problem(hidden, batch)
            builders: list[tuple[str, Callable[[], Candidate]]] = [
                (PNN, lambda: pnn_step(prob, PNN).candidate),  # noqa: B023  (called right away)
                (GEMM, lambda: gemm_step(hidden, batch, GEMM).candidate),  # noqa: B023
            ]
            label = f"H={hidden} B={batch}"
            before = dict(result.failed)
            result.failed.clear()
            timings = run_candidates(builders, config, result, desc=label, repeats=repeats, progress=bar)
            result.failed = {**before, **{f"{label} {k}": v for k, v in result.failed.items()}}
            work = flops(hidden, batch)
            pnn, gemm = timings.get(PNN), timings.get(GEMM)
            pnn_rate = work / pnn.median / 1e9 if pnn and pnn.median > 0 else None
            gemm_rate = work / gemm.median / 1e9 if gemm and gemm.median > 0 else None
            if pnn is None:
                continue
            row = timing_row(
                label,
                pnn,
                hidden=hidden,
                batch=batch,
                gflop_per_step=work / 1e9,
                pnn_gflops=pnn_rate,
                gemm_gflops=gemm_rate,
                gemm_median_s=gemm.median if gemm else None,
                gemm_spread=gemm.spread if gemm else None,
                ratio=pnn_rate / gemm_rate if pnn_rate and gemm_rate else None,
                paired_ratio=1 / pr if (pr := paired_ratio(pnn, gemm)) else None,
                gemm_timing=gemm.as_dict() if gemm else None,
            )
            result.rows.append(row)
    result.columns = [
        Column("size", "name"),
        Column("GFLOP/step", "gflop_per_step", "float"),
        Column("portable_nn/step", "median_s", "time"),
        Column("spread", "spread", "pct"),
        Column("GEMM only/step", "gemm_median_s", "time"),
        Column("spread", "gemm_spread", "pct"),
        Column("pnn GFLOP/s", "pnn_gflops", "gflops"),
        Column("GEMM GFLOP/s", "gemm_gflops", "gflops"),
        Column("pnn/GEMM rate", "ratio", "ratio"),
    ]
    result.notes.append(
        "pnn/GEMM rate = GEMM-only time / portable_nn time (1.00x: all time in the matmuls); "
        "the JSON also has paired_ratio, the median of the per-repeat ratios"
    )
    result.settings = {
        "ratio": "portable_nn GFLOP/s / GEMM-only GFLOP/s (= GEMM-only time / portable_nn time)",
        "repeats": repeats,
        "sizes": [list(s) for s in sizes],
        "dtype": "float32",
    }
    return result
