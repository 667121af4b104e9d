"""Pooling over NCHW images: MaxPool2D, AvgPool2D (sliding windows) and GlobalAvgPool2D.

The windows are strided slices of X, padded as torch pads them (``-inf`` for
the maximum, zeros for the mean), one slice per offset (``_windows.windows``);
the backward sums each offset's share of ``dY`` back into place
(``_windows.overlap_add``) and crops the padding. Array API operations only.
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat

from .._rng import Seed
from ._windows import (
    Pads,
    Pair,
    as_pair,
    check_images,
    crop2d,
    output_size,
    overlap_add,
    pad2d,
    short_pair,
    windows,
)
from .base import Array, Backprop, Layer, Params, check_params

__all__ = ["AvgPool2D", "GlobalAvgPool2D", "MaxPool2D"]


class _Pool2D(Layer):
    """A ``kernel_size`` window sliding by ``stride`` (default: ``kernel_size``, windows that do not overlap).

    Its subclasses define their own ``__init__`` (calling this one), so that Python's
    own argument errors name them.
    """

    def __init__(self, kernel_size: int | Pair, stride: int | Pair | None, padding: int | Pair) -> None:
        name = type(self).__name__
        self.kernel_size = as_pair(name, "kernel_size", kernel_size, 1)
        self.stride = self.kernel_size if stride is None else as_pair(name, "stride", stride, 1)
        self.padding = as_pair(name, "padding", padding, 0)
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        if 2 * ph > kh or 2 * pw > kw:
            raise ValueError(
                f"{name}: padding must be at most half of kernel_size on each axis (2 * padding <= kernel_size, "
                f"torch's rule for pooling), got padding={short_pair(self.padding)} for kernel_size="
                f"{short_pair(self.kernel_size)}. Pass padding <= {short_pair((kh // 2, kw // 2))}, or a larger "
                "kernel_size."
            )

    def __repr__(self) -> str:
        extra = "" if self.stride == self.kernel_size else f", stride={short_pair(self.stride)}"
        if self.padding != (0, 0):
            extra += f", padding={short_pair(self.padding)}"
        return f"{type(self).__name__}({short_pair(self.kernel_size)}{extra})"

    def _windows(self, params: Params, X: Array, fill: float) -> tuple[Any, Pads, Array, list[Array]]:
        """Check the input; return its namespace, the pads, X padded with ``fill`` and its windows' slices."""
        check_params(self, params, {})
        xp = check_images(self, X)
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        pads = (ph, ph, pw, pw)
        out = output_size(self, X.shape, self.kernel_size, self.stride, pads, max_padding=(kh // 2, kw // 2))
        Xp = pad2d(xp, X, pads, fill) if any(pads) else X
        return xp, pads, Xp, windows(Xp, self.kernel_size, self.stride, out)

    def _overlap_add(self, xp: Any, parts: list[Array], Xp: Array, pads: Pads) -> Array:
        """dX: the parts summed back into the padded image, the padding cropped."""
        dXp = overlap_add(xp, parts, self.kernel_size, self.stride, (Xp.shape[2], Xp.shape[3]))
        return crop2d(dXp, pads) if any(pads) else dXp


class MaxPool2D(_Pool2D):
    """The maximum of each ``kernel_size`` window, like ``torch.nn.MaxPool2d``.

    Args:
        kernel_size: ``k`` or ``(kh, kw)``, each >= 1.
        stride: ``s`` or ``(sh, sw)``; ``None`` (default) is ``kernel_size``.
        padding: ``p`` or ``(ph, pw)`` rows/columns of ``-inf`` on both sides
            of each image (default 0), at most half the kernel
            (``2 * p <= k``, torch's rule: every window then holds an element of X).

    Shapes: X ``(N, C, H, W)`` -> Y ``(N, C, (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1)``,
    X's dtype.

    Gradient: each window's ``dY`` goes to ONE element of X, the first maximum
    in row-major window order (a sequential argmax, ``xp.argmax`` over the
    offsets; what PyTorch's CPU kernel does too), never to the padding: in a
    window whose elements of X are all ``-inf``, to the first of them, as
    PyTorch does. Where windows overlap, an element collects the gradients of
    every window that picked it. No params (``{}``).

    Raises:
        ValueError: X not 4-d ``(N, C, H, W)``, or smaller than the kernel after padding; ``padding`` over half the kernel; params other than expected.
        TypeError: X not a real floating array.

    >>> import numpy as np, portable_nn as pnn
    >>> pnn.MaxPool2D(2)({}, np.arange(16.0).reshape(1, 1, 4, 4))
    array([[[[ 5.,  7.],
             [13., 15.]]]])
    """

    def __init__(self, kernel_size: int | Pair, stride: int | Pair | None = None, padding: int | Pair = 0) -> None:
        super().__init__(kernel_size, stride, padding)

    def apply(
        self, params: Params, X: Array, *, train: bool = False, rng: Seed = None
    ) -> tuple[Array, Backprop]:
        xp, pads, Xp, slices = self._windows(params, X, -math.inf)
        cols = xp.stack(slices, axis=2)  # (N, C, kh*kw, OH, OW)
        Y = xp.max(cols, axis=2)

        def backprop(dY: Array, *, need_dX: bool = True) -> tuple[Array, Params]:
            first = xp.argmax(cols, axis=2)  # the standard's argmax returns the first maximum
            if any(pads):  # a window of -inf only: its first element of X, not the padding before it
                first = xp.where(Y == -math.inf, self._first_inside(xp, Y, first.dtype), first)
            parts = [dY * xp.astype(first == k, dY.dtype) for k in range(len(slices))]
            return self._overlap_add(xp, parts, Xp, pads), {}

        return Y, backprop

    def _first_inside(self, xp: Any, Y: Array, dtype: Any) -> Array:
        """``(OH, OW)``: the offset of each window's first element of X (not padding), row-major.

        Window ``(a, b)`` starts at padded row ``sh * a``, so its first row of X is
        kernel row ``max(ph - sh * a, 0)``; columns likewise.
        """
        (sh, sw), (ph, pw), kw = self.stride, self.padding, self.kernel_size[1]
        device = array_api_compat.device(Y)
        rows = xp.clip(ph - sh * xp.arange(Y.shape[2], dtype=dtype, device=device), 0, None)
        cols = xp.clip(pw - sw * xp.arange(Y.shape[3], dtype=dtype, device=device), 0, None)
        return xp.reshape(rows, (-1, 1)) * kw + xp.reshape(cols, (1, -1))


class AvgPool2D(_Pool2D):
    """The mean of each ``kernel_size`` window, like ``torch.nn.AvgPool2d`` (``count_include_pad=True``).

    Args:
        kernel_size: ``k`` or ``(kh, kw)``, each >= 1.
        stride: ``s`` or ``(sh, sw)``; ``None`` (default) is ``kernel_size``.
        padding: ``p`` or ``(ph, pw)`` rows/columns of zeros on both sides of
            each image (default 0), at most half the kernel (``2 * p <= k``,
            torch's rule). Every mean divides by ``kh * kw``, padding included,
            as torch's default ``count_include_pad=True`` does.

    Shapes: X ``(N, C, H, W)`` -> Y ``(N, C, (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1)``,
    X's dtype. No params (``{}``).

    Raises:
        ValueError: X not 4-d ``(N, C, H, W)``, or smaller than the kernel after padding; ``padding`` over half the kernel; params other than expected.
        TypeError: X not a real floating array.

    >>> import numpy as np, portable_nn as pnn
    >>> pnn.AvgPool2D(2)({}, np.arange(16.0).reshape(1, 1, 4, 4))
    array([[[[ 2.5,  4.5],
             [10.5, 12.5]]]])
    """

    def __init__(self, kernel_size: int | Pair, stride: int | Pair | None = None, padding: int | Pair = 0) -> None:
        super().__init__(kernel_size, stride, padding)

    def apply(
        self, params: Params, X: Array, *, train: bool = False, rng: Seed = None
    ) -> tuple[Array, Backprop]:
        xp, pads, Xp, slices = self._windows(params, X, 0.0)
        area = len(slices)
        Y = slices[0]
        for part in slices[1:]:  # summed in offset order, without a stacked copy
            Y = Y + part
        Y = Y / float(area)

        def backprop(dY: Array, *, need_dX: bool = True) -> tuple[Array, Params]:
            share = dY / float(area)
            return self._overlap_add(xp, [share] * area, Xp, pads), {}

        return Y, backprop


class GlobalAvgPool2D(Layer):
    """The mean over each image: X ``(N, C, H, W)`` -> Y ``(N, C)``, X's dtype. No params.

    Often between the last conv and a Linear, instead of ``Flatten``: Y has one
    value per channel whatever the image size.

    Raises:
        ValueError: X not 4-d ``(N, C, H, W)``; params other than expected.
        TypeError: X not a real floating array.
    """

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
