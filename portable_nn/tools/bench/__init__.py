"""Benchmarks of portable_nn against hand-written NumPy, the GEMM limit, PyTorch, JAX and scikit-learn.

``python -m portable_nn bench [--quick] [--json FILE] [--cases a,b,c,d,e,f,g] [--backends torch,jax,sklearn]``

Cases (one module each, run by :mod:`portable_nn.tools.bench.runner`):

- a (:mod:`.mlp_step`): one training step of a 784-512-512-10 MLP, batch 256;
- b (:mod:`.notebook`): the teaching notebook's 3-2-1 net, microseconds per step;
- c (:mod:`.digits`): digits end to end, time to train to >= 0.97 test accuracy;
- d (:mod:`.scaling`): GFLOP/s across hidden widths and batch sizes vs the matmuls alone;
- e (:mod:`.memory`): RSS of ``pnn.fit`` per epoch, and the peak;
- f (:mod:`.sklearn_mlp`): ``portable_nn.sklearn.MLPClassifier`` against scikit-learn's, equal epochs on digits;
- g (:mod:`.cnn_step`): one training step of a small CNN (batch 64, 3x32x32) against PyTorch eager
  and a hand-written JAX step; im2col memory and the RSS of ``pnn.fit`` across epochs.

These are measurements, not tests: speed goals are printed next to the
measured ratios as met or missed, never asserted.
"""

from __future__ import annotations

from ._result import CaseResult, Column, Target
from .runner import CASES, SCHEMA, BenchReport, run_bench, run_case

__all__ = ["CASES", "SCHEMA", "BenchReport", "CaseResult", "Column", "Target", "run_bench", "run_case"]
