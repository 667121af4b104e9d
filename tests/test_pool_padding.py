"""Padded pooling (MaxPool2D, AvgPool2D ``padding=``) on the backend under test.

* forward and backward equal ``torch.nn.functional.max_pool2d``/``avg_pool2d`` with the same padding
  (float64, odd sizes, strides; ``-inf`` windows and ties included);
* backprop agrees with finite differences; dtype, namespace and device kept, nothing written;
* errors advise only what the layers take, and padding over half the kernel is refused by torch's rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import portable_nn as pnn

from ._support import host
from .test_cnn import Oracle, check_gradients, check_kinds_and_no_writes, compare_with_torch

X_ODD = (2, 3, 7, 5)  # (batch, channels, height, width): odd sizes

# (kernel, stride, padding): square and not, windows that overlap and that skip rows, padding up to
# kernel // 2 (odd and even kernels) and none on one axis. Few: JAX compiles each op once per shape.
GEOMETRIES = [(3, 2, 1), ((3, 2), (1, 2), (1, 1)), ((4, 5), (3, 2), (2, 0))]
LAYERS: dict[str, tuple[Callable[..., pnn.Layer], Callable[..., Any]]] = {
    "MaxPool2D": (pnn.MaxPool2D, lambda F: F.max_pool2d),
    "AvgPool2D": (pnn.AvgPool2D, lambda F: F.avg_pool2d),  # count_include_pad=True, torch's default
}


def _case(name: str, kernel: Any, stride: Any, padding: Any) -> tuple[pnn.Layer, Oracle]:
    make, op = LAYERS[name]
    return make(kernel, stride, padding), lambda F, X, p: op(F)(X, kernel, stride, padding)


def _float64(tb: Any) -> None:
    if "float64" not in tb.dtypes:
        pytest.skip(f"{tb.spec} has no float64; the torch oracle is compared in float64 to 1e-12")


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
@pytest.mark.parametrize("name", list(LAYERS))
def test_padded_pooling_matches_torch_forward_and_backward(tb: Any, name: str, geometry: tuple) -> None:
    _float64(tb)
    layer, oracle = _case(name, *geometry)
    X_host = np.random.default_rng(0).standard_normal(X_ODD)
    compare_with_torch(tb, layer, oracle, X_host, "float64", tol=1e-12)


def test_padded_max_pool_with_ties_and_minus_inf_matches_torch(tb: Any) -> None:
    """Small integers (ties in most windows) and -inf entries: windows whose elements are all -inf
    send their gradient to their first element of X, as torch does, never into the padding."""
    _float64(tb)
    X_host = np.random.default_rng(3).integers(0, 3, X_ODD).astype(np.float64)
    X_host[X_host == 0] = -np.inf
    X_host[0, 0] = -np.inf  # a whole image of -inf
    torch = pytest.importorskip("torch")
    Y, backprop = pnn.MaxPool2D(3, 1, 1).apply({}, tb.asarray(X_host, "float64"))
    dY_host = np.random.default_rng(4).standard_normal(tuple(Y.shape))
    dX, _ = backprop(tb.asarray(dY_host, "float64"))
    Xt = torch.tensor(X_host, requires_grad=True)
    Yt = torch.nn.functional.max_pool2d(Xt, 3, 1, 1)
    Yt.backward(torch.tensor(dY_host))
    np.testing.assert_array_equal(host(Y), Yt.detach().numpy())  # maxima are elements of X, -inf included
    np.testing.assert_allclose(host(dX), Xt.grad.numpy(), rtol=0, atol=1e-12)


def test_max_pool_of_minus_inf_sends_each_gradient_to_the_first_element_of_x(tb: Any) -> None:
    """3x3 of -inf, 2x2 windows, stride 1, padding 1: 16 windows; torch gives this dX (worked by hand)."""
    X = tb.asarray(np.full((1, 1, 3, 3), -np.inf), tb.float)
    Y, backprop = pnn.MaxPool2D(2, 1, 1).apply({}, X)
    assert tuple(Y.shape) == (1, 1, 4, 4) and np.all(host(Y) == -np.inf)
    dX, _ = backprop(tb.asarray(np.arange(1.0, 17.0).reshape(1, 1, 4, 4), tb.float))
    np.testing.assert_array_equal(host(dX), [[[[14.0, 10.0, 12.0], [19.0, 11.0, 12.0], [27.0, 15.0, 16.0]]]])


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
@pytest.mark.parametrize("name", list(LAYERS))
def test_padded_pooling_backprop_matches_finite_differences(tb: Any, name: str, geometry: tuple) -> None:
    check_gradients(tb, _case(name, *geometry)[0], X_ODD, seed=5)


@pytest.mark.parametrize("name", list(LAYERS))
def test_float32_padded_pooling_keeps_dtype_namespace_device_and_writes_nothing(tb: Any, name: str) -> None:
    layer = _case(name, *GEOMETRIES[0])[0]
    X = tb.asarray(np.random.default_rng(3).standard_normal(X_ODD), "float32")
    check_kinds_and_no_writes(tb, layer, {}, X)


@pytest.mark.parametrize("name", list(LAYERS))
def test_a_kernel_larger_than_the_images_advises_a_padding_the_layer_takes(tb: Any, name: str) -> None:
    make = LAYERS[name][0]
    X = tb.asarray(np.random.default_rng(1).standard_normal((1, 2, 4, 4)), tb.float)
    with pytest.raises(ValueError) as info:
        make(5)({}, X)
    message = str(info.value)
    assert message.startswith(f"{name}(5): kernel 5x5 is larger than the input 4x4; X has shape (1, 2, 4, 4)")
    advised = re.search(r"Use a smaller kernel_size, larger images, or padding=(\d+) on each side\.$", message)
    assert advised, message
    Y = make(5, padding=int(advised.group(1)))({}, X)  # the advice works
    assert tuple(Y.shape) == (1, 2, 1, 1)
    with pytest.raises(ValueError, match=re.escape(f"{name}((2, 7)): kernel 2x7") + ".*or padding=\\(0, 2\\) on"):
        make((2, 7))({}, X)


CONFIG_ERRORS: list[tuple[Callable[[], Any], type[Exception], str]] = [
    (lambda: pnn.MaxPool2D(3, padding=2), ValueError,
     re.escape("MaxPool2D: padding must be at most half of kernel_size on each axis (2 * padding <= kernel_size, "
               "torch's rule for pooling), got padding=2 for kernel_size=3. Pass padding <= 1")),
    (lambda: pnn.AvgPool2D((3, 4), padding=(1, 3)), ValueError,
     r"AvgPool2D: padding must be at most half .* got padding=\(1, 3\) for kernel_size=\(3, 4\)\. Pass padding <= \(1, 2\)"),
    (lambda: pnn.MaxPool2D(1, padding=1), ValueError, r"MaxPool2D: padding must be at most half"),
    (lambda: pnn.AvgPool2D(2, padding=-1), ValueError, r"AvgPool2D: padding must be >= 0, got -1"),
    (lambda: pnn.MaxPool2D(2, padding="same"), TypeError, r"MaxPool2D: padding must be an int, got str"),  # type: ignore[arg-type]
    # Python's own argument errors name the public class, not a private base
    (lambda: pnn.MaxPool2D(2, pading=1), TypeError, r"^MaxPool2D\.__init__\(\) got an unexpected keyword"),  # type: ignore[call-arg]
    (lambda: pnn.AvgPool2D(), TypeError, r"^AvgPool2D\.__init__\(\) missing 1 required positional"),  # type: ignore[call-arg]
]


@pytest.mark.parametrize("make, error, match", CONFIG_ERRORS)
def test_bad_padding_raises_a_clear_error(make: Callable[[], Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        make()


def test_padding_in_repr_and_torchs_size_rule() -> None:
    assert repr(pnn.MaxPool2D(3, 1, 1)) == "MaxPool2D(3, stride=1, padding=1)"
    assert repr(pnn.AvgPool2D((3, 2), padding=(1, 0))) == "AvgPool2D((3, 2), padding=(1, 0))"
    assert repr(pnn.MaxPool2D(2, padding=0)) == "MaxPool2D(2)"
    # padding up to kernel // 2 is accepted on each axis, as torch accepts it
    assert pnn.MaxPool2D((5, 4), padding=(2, 2)).padding == (2, 2)
