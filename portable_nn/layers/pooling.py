"""Pooling over NCHW images: MaxPool2D, AvgPool2D (sliding windows) and GlobalAvgPool2D.

The windows are strided slices of X, one per offset (``_windows.windows``);
the backward sums each offset's share of ``dY`` back into place
(``_windows.overlap_add``). No padding. Array API operations only.
"""

from __future__ import annotations

from typing import Any

from .._rng import Seed
from ._windows import Pair, as_pair, check_images, output_size, overlap_add, short_pair, windows
from .base import Array, Backprop, Layer, Params, check_params

__all__ = ["AvgPool2D", "GlobalAvgPool2D", "MaxPool2D"]

_NO_PADS = (0, 0, 0, 0)


class _Pool2D(Layer):
    """A ``kernel_size`` window sliding by ``stride`` (default: ``kernel_size``, windows that do not overlap)."""

    def __init__(self, kernel_size: int | Pair, stride: int | Pair | None = None) -> None:
        name = type(self).__name__
        self.kernel_size = as_pair(name, "kernel_size", kernel_size, 1)
        self.stride = self.kernel_size if stride is None else as_pair(name, "stride", stride, 1)

    def __repr__(self) -> str:
        stride = "" if self.stride == self.kernel_size else f", stride={short_pair(self.stride)}"
        return f"{type(self).__name__}({short_pair(self.kernel_size)}{stride})"

    def _windows(self, params: Params, X: Array) -> tuple[Any, list[Array]]:
        """Check the input; return its namespace and the windows' slices, one per offset."""
        check_params(self, params, {})
        xp = check_images(self, X)
        out = output_size(self, X.shape, self.kernel_size, self.stride, _NO_PADS)
        return xp, windows(X, self.kernel_size, self.stride, out)

    def _overlap_add(self, xp: Any, parts: list[Array], X: Array) -> Array:
        return overlap_add(xp, parts, self.kernel_size, self.stride, (X.shape[2], X.shape[3]))


class MaxPool2D(_Pool2D):
    """The maximum of each ``kernel_size`` window, like ``torch.nn.MaxPool2d`` without padding.

    Args:
        kernel_size: ``k`` or ``(kh, kw)``, each >= 1.
        stride: ``s`` or ``(sh, sw)``; ``None`` (default) is ``kernel_size``.

    Shapes: X ``(N, C, H, W)`` -> Y ``(N, C, (H - kh) // sh + 1, (W - kw) // sw + 1)``, X's dtype.

    Gradient: each window's ``dY`` goes to ONE element, the first maximum in
    row-major window order (a sequential argmax, ``xp.argmax`` over the offsets;
    what PyTorch's CPU kernel does too). Where windows overlap, an element
    collects the gradients of every window that picked it.
    """

    def apply(
        self, params: Params, X: Array, *, train: bool = False, rng: Seed = None
    ) -> tuple[Array, Backprop]:
        xp, slices = self._windows(params, X)
        cols = xp.stack(slices, axis=2)  # (N, C, kh*kw, OH, OW)
        Y = xp.max(cols, axis=2)

        def backprop(dY: Array, *, need_dX: bool = True) -> tuple[Array, Params]:
            first = xp.argmax(cols, axis=2)  # the standard's argmax returns the first maximum
            parts = [dY * xp.astype(first == k, dY.dtype) for k in range(len(slices))]
            return self._overlap_add(xp, parts, X), {}

        return Y, backprop


class AvgPool2D(_Pool2D):
    """The mean of each ``kernel_size`` window, like ``torch.nn.AvgPool2d`` without padding.

    Args:
        kernel_size: ``k`` or ``(kh, kw)``, each >= 1.
        stride: ``s`` or ``(sh, sw)``; ``None`` (default) is ``kernel_size``.

    Shapes: X ``(N, C, H, W)`` -> Y ``(N, C, (H - kh) // sh + 1, (W - kw) // sw + 1)``, X's dtype.
    """

    def apply(
        self, params: Params, X: Array, *, train: bool = False, rng: Seed = None
    ) -> tuple[Array, Backprop]:
        xp, slices = self._windows(params, X)
        area = len(slices)
        Y = slices[0]
        for part in slices[1:]:  # summed in offset order, without a stacked copy
            Y = Y + part
        Y = Y / float(area)

        def backprop(dY: Array, *, need_dX: bool = True) -> tuple[Array, Params]:
            share = dY / float(area)
            return self._overlap_add(xp, [share] * area, X), {}

        return Y, backprop


class GlobalAvgPool2D(Layer):
    """The mean over each image: X ``(N, C, H, W)`` -> Y ``(N, C)``, X's dtype. No params."""

    def apply(
        self, params: Params, X: Array, *, train: bool = False, rng: Seed = None
    ) -> tuple[Array, Backprop]:
        check_params(self, params, {})
        xp = check_images(self, X)
        n, c, h, w = X.shape
        Y = xp.mean(X, axis=(2, 3))

        def backprop(dY: Array, *, need_dX: bool = True) -> tuple[Array, Params]:
            return xp.broadcast_to(xp.reshape(dY / float(h * w), (n, c, 1, 1)), (n, c, h, w)), {}

        return Y, backprop
