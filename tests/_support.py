"""Helpers shared by the layer and loss tests."""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np
from hypothesis import seed as hypothesis_seed
from hypothesis import settings
from hypothesis import strategies as st

import portable_nn as pnn

# Reproducible (no database, derandomized) and fast: the suite runs once per backend in CI.
FAST = settings(max_examples=15, deadline=None, derandomize=True, database=None)
# One fixed seed for every @given test (it takes precedence over derandomize's per-test
# seed), so all of them draw the same shapes: JAX compiles each op once per shape.
SHAPES = hypothesis_seed(20240601)

sizes = st.integers(min_value=1, max_value=6)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


def host(a: Any) -> np.ndarray:
    """A host copy that shares no memory with ``a`` (torch's .numpy() does)."""
    return np.array(pnn.to_numpy(a), copy=True)


def rel_err(actual: Any, desired: Any) -> float:
    """``max|actual - desired| / max|desired|`` on host copies in float64 (either may be any backend's array)."""
    want = host(desired).astype(np.float64)
    return float(np.max(np.abs(host(actual) - want)) / max(float(np.max(np.abs(want))), 1e-300))


def dtypes_under_test(tb: Any) -> list[str]:
    """float32 plus every dtype the device supports, each once."""
    return list(dict.fromkeys(("float32", *tb.dtypes)))


def assert_same_kind(a: Any, ref: Any, what: str) -> None:
    """``a`` has the dtype, namespace and device of ``ref``."""
    assert a.dtype == ref.dtype, f"{what}: dtype {a.dtype} != {ref.dtype}"
    assert pnn.namespace(a) is pnn.namespace(ref), (
        f"{what}: namespace {pnn.namespace(a)} != {pnn.namespace(ref)}"
    )
    assert array_api_compat.device(a) == array_api_compat.device(ref), (
        f"{what}: device {array_api_compat.device(a)} != {array_api_compat.device(ref)}"
    )
