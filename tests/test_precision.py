"""pnn.available_precisions and be.dtype for bfloat16/float16: probed per backend and device, clear errors."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest

import portable_nn as pnn
from portable_nn._check import dtype_name

LOW = {"numpy": ("float16",), "torch": ("bfloat16", "float16"), "jax": ("bfloat16", "float16"), "array_api_strict": ()}


def _fresh(monkeypatch: pytest.MonkeyPatch, name: str) -> Any:
    """The adapter of backend ``name`` with its probed answers forgotten for this test."""
    adapter = pnn.backends.adapter(name)
    monkeypatch.setattr(adapter, "_probed", {})
    return adapter


def test_available_precisions_per_backend(tb: Any) -> None:
    want = tuple(p for p in ("float32", "float64", "bfloat16", "float16") if p in tb.dtypes + LOW[tb.be.name])
    assert pnn.available_precisions(tb.be) == want
    assert pnn.available_precisions(tb.spec.replace("numpy-readonly", "numpy")) == want  # a spec string too


def test_available_precisions_of_the_default_backend(tb: Any) -> None:
    with pnn.use_backend(tb.be):
        assert pnn.available_precisions() == pnn.available_precisions(tb.be)


def test_each_device_is_probed_once(tb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = _fresh(monkeypatch, tb.be.name)
    calls = []
    real = adapter.probe_precision
    monkeypatch.setattr(adapter, "probe_precision", lambda *a: calls.append(a[1]) or real(*a))
    problem = adapter.precision_problem(tb.be.xp, tb.be.device, "float16")  # only what is asked is probed
    assert len(calls) == (0 if problem and "has no float16" in problem else 1)
    first = pnn.available_precisions(tb.be)
    assert pnn.available_precisions(tb.be) == first
    for name in first:
        tb.be.dtype(name)
    assert 1 <= len(calls) <= 4  # once per precision the library has a dtype for
    assert len(calls) == len(set(map(str, calls)))


@pytest.mark.parametrize("name", ["bfloat16", "float16"])
def test_low_precision_casts_round_trip(tb: Any, name: str) -> None:
    if name not in pnn.available_precisions(tb.be):
        pytest.skip(f"{tb.spec} has no {name}")
    host = np.array([[1.5, -2.0, 0.25], [1.0 / 3.0, 3e4, -7.1]], dtype=np.float32)
    low = np.float16 if name == "float16" else np.dtype(pytest.importorskip("ml_dtypes").bfloat16)
    want = host.astype(low).astype(np.float32)  # round to nearest even, as the devices do
    xp = tb.be.xp
    X = tb.asarray(host, dtype="float32")
    L = xp.astype(X, tb.be.dtype(name))
    assert dtype_name(L.dtype) == name
    back = pnn.to_numpy(xp.astype(L, xp.float32))
    np.testing.assert_array_equal(back, want)
    host_low = pnn.to_numpy(L)  # as NumPy's float16 or ml_dtypes' bfloat16 (torch's .numpy() has none)
    assert host_low.dtype == low
    np.testing.assert_array_equal(host_low.astype(np.float32), want)
    np.testing.assert_array_equal(back[0], host[0])  # exactly representable values come back as they were
    assert dtype_name(tb.be.asarray([1.0, 2.0], dtype=name).dtype) == name


@pytest.mark.parametrize("name", ["bfloat16", "float16"])
def test_array_api_strict_has_no_16_bit_floats(tb: Any, name: str) -> None:
    be = pnn.get_backend("array_api_strict")
    with pytest.raises(pnn.PrecisionError, match=rf"'array_api_strict'.*cannot compute in {name}.*float32") as info:
        be.dtype(name)
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)
    assert "has no " + name in str(info.value)


def test_numpy_bfloat16_without_ml_dtypes_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    _fresh(monkeypatch, "numpy")
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)  # import ml_dtypes raises ImportError
    be = pnn.get_backend("numpy")
    with pytest.raises(ValueError, match=r"'numpy'.*cannot compute in bfloat16.*pip install ml_dtypes.*float16"):
        be.dtype("bfloat16")
    assert pnn.available_precisions("numpy") == ("float32", "float64", "float16")


def test_numpy_bfloat16_with_ml_dtypes_says_why_layers_cannot_use_it(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ml_dtypes")
    _fresh(monkeypatch, "numpy")
    with pytest.raises(pnn.PrecisionError, match=r"numpy.isdtype does not count bfloat16.*matmul.*gives float32"):
        pnn.get_backend("numpy").dtype("bfloat16")


def test_missing_float64_is_a_precision_error_and_still_a_type_error(tb: Any) -> None:
    be = pnn.get_backend("array_api_strict:no_float64")
    with pytest.raises(pnn.PrecisionError, match="does not support dtype float64"):
        be.dtype("float64")
    with pytest.raises(TypeError):
        be.dtype("float64")
    assert pnn.available_precisions(be) == ("float32",)


def test_probe_inside_jax_jit_is_eager(tb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    if tb.be.name != "jax":
        pytest.skip("jax.jit")
    import jax

    _fresh(monkeypatch, "jax")

    @jax.jit
    def half(x: Any) -> Any:  # the first question about bfloat16 is asked while tracing
        return tb.be.xp.astype(x, tb.be.dtype("bfloat16"))

    assert dtype_name(half(tb.asarray([1.0, 2.0], dtype="float32")).dtype) == "bfloat16"
    assert "bfloat16" in pnn.available_precisions(tb.be)
