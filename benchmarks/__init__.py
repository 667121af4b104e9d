"""Benchmarks of portable_nn against hand-written NumPy, the GEMM limit, PyTorch, JAX and scikit-learn.

    python -m benchmarks [--quick] [--json FILE] [--cases a,b,...] [--backends torch,jax,sklearn]
    nox -s bench -- --quick --cases a,b

Outside the installed package (a source checkout only): ``import portable_nn``
never imports them. One module per case (``mlp_step``, ``notebook``, ``digits``,
``scaling``, ``memory``, ``sklearn_mlp``, ``cnn_step``, ``dask_parallel``), listed
with one line each in :data:`CASES` (and ``python -m benchmarks --help``);
:func:`run_bench` runs them, each in a fresh process, and collects a
:class:`BenchReport`. Shared scaffolding: ``_common`` (settings, optional
libraries, rows), ``_steps`` (restartable training-step candidates),
``_interleaved`` (round-robin timing), ``_result`` (tables, targets, JSON),
``_machine`` (threads, RSS, load).

These are measurements, not tests: speed goals are printed next to the
measured ratios as met or missed, never asserted.
"""

from __future__ import annotations

from ._result import CaseResult, Column, Target
from .runner import CASES, DEFAULT_CASES, SCHEMA, BenchReport, Case, run_bench, run_case

__all__ = [
    "CASES",
    "DEFAULT_CASES",
    "SCHEMA",
    "BenchReport",
    "Case",
    "CaseResult",
    "Column",
    "Target",
    "run_bench",
    "run_case",
]
