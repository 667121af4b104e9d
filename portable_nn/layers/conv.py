"""Conv2D: 2-D convolution (cross-correlation, as in PyTorch) over NCHW images.

The forward pass is im2col: one strided slice of the padded input per kernel
offset, stacked (channels and offsets first, ``(C, kh*kw, N, OH, OW)``, so
NumPy's ``tensordot`` needs no transposed copy of it) and contracted with
``W`` in one ``tensordot``. ``dW`` is the
same contraction with ``dY``; ``dX`` sums each offset's share of ``dY @ W``
back into place (``_windows.overlap_add``). Array API operations only.
"""

from __future__ import annotations

import numpy as np

from .._check import check_int
from .._rng import Seed
from ..backends import Backend
from ._windows import (
    Pads,
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
from .init import Initializer, get_initializer

__all__ = ["Conv2D"]


class Conv2D(Layer):
    """2-D convolution over ``(batch, channels, height, width)`` images, like ``torch.nn.Conv2d``.

    Args:
        in_channels: channels of X (axis 1), >= 1.
        out_channels: channels of Y (axis 1), >= 1.
        kernel_size: ``kh`` or ``(kh, kw)``, each >= 1.
        stride: ``s`` or ``(sh, sw)``, each >= 1.
        padding: zeros added around each image: ``p`` or ``(ph, pw)`` on both
            sides (>= 0), ``"valid"`` (none, the default) or ``"same"`` (Y has
            X's height and width; stride 1 only; for an even kernel the extra
            row/column goes on the bottom/right, as PyTorch does).
        bias: add a learned bias ``b`` of shape ``(out_channels,)``.
        init: ``"he"`` (default), ``"glorot"``, ``"normal"``, ``"zeros"`` or a
            callable ``f(rng, (fan_in, fan_out)) -> numpy.ndarray``. It is
            called with ``(in_channels * kh * kw, out_channels)``: the conv is
            a Linear from each window to the output channels, and that matrix
            ``M`` (drawn on the host) becomes ``W = M.T.reshape(W's shape)``.

    Params: ``{"W": (out_channels, in_channels, kh, kw), "b": (out_channels,)}``,
    the layout of ``torch.nn.Conv2d``'s ``weight`` and ``bias``: PyTorch
    weights load as ``{"W": conv.weight.detach().numpy(), "b": conv.bias.detach().numpy()}``.

    Shapes: X ``(N, in_channels, H, W)`` -> Y ``(N, out_channels, OH, OW)`` of
    the params' dtype, with ``OH = (H + pad_top + pad_bottom - kh) // sh + 1``
    (``OW`` likewise). Its backprop takes ``need_dX=False`` to skip dX.

    Raises:
        ValueError: sizes, strides or paddings out of range (``"same"`` with a
            stride); X not 4-d ``(N, C, H, W)``, with another channel count, smaller
            than the kernel after padding, or on another device than the params;
            params of another shape.
        TypeError: arguments of the wrong type; X not a real floating array, or
            of another dtype or array library than the params.

    >>> import numpy as np, portable_nn as pnn
    >>> conv = pnn.Conv2D(3, 8, 3, padding="same")
    >>> params = conv.init(seed=0, backend="numpy")    # {"W": (8, 3, 3, 3), "b": (8,)}
    >>> conv(params, np.zeros((2, 3, 16, 16), dtype="float32")).shape
    (2, 8, 16, 16)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        *,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        bias: bool = True,
        init: str | Initializer = "he",
    ) -> None:
        self.in_channels = check_int("Conv2D", "in_channels", in_channels, 1)
        self.out_channels = check_int("Conv2D", "out_channels", out_channels, 1)
        self.kernel_size = as_pair("Conv2D", "kernel_size", kernel_size, 1)
        self.stride = as_pair("Conv2D", "stride", stride, 1)
        self.padding, self.pads = _padding(padding, self.kernel_size, self.stride)
        self.bias = bool(bias)
        self.initializer = get_initializer(init, repr(self))

    def __repr__(self) -> str:
        extra = ""
        if self.stride != (1, 1):
            extra += f", stride={short_pair(self.stride)}"
        if self.padding != (0, 0):
            extra += f", padding={short_pair(self.padding)!r}"
        if not self.bias:
            extra += ", bias=False"
        return f"Conv2D({self.in_channels}, {self.out_channels}, {short_pair(self.kernel_size)}{extra})"

    def init_params(self, rng: np.random.Generator, be: Backend, dtype: str) -> Params:
        kh, kw = self.kernel_size
        M = self.initializer(rng, (self.in_channels * kh * kw, self.out_channels))
        W = np.asarray(M, dtype=dtype).T.reshape(self.out_channels, self.in_channels, kh, kw)
        params = {"W": be.asarray(np.ascontiguousarray(W))}
        if self.bias:
            params["b"] = be.asarray(np.zeros(self.out_channels, dtype=dtype))
        return params

    def apply(
        self, params: Params, X: Array, *, train: bool = False, rng: Seed = None
    ) -> tuple[Array, Backprop]:
        (kh, kw), C, F = self.kernel_size, self.in_channels, self.out_channels  # F: out_channels (filters)
        shapes: dict[str, tuple[int, ...]] = {"W": (F, C, kh, kw)}
        if self.bias:
            shapes["b"] = (F,)
        W, *rest = check_params(self, params, shapes)
        b = rest[0] if rest else None
        xp = check_images(self, X, like=W, channels=C)
        out = output_size(self, X.shape, self.kernel_size, self.stride, self.pads)
        Xp = pad2d(xp, X, self.pads)
        K = kh * kw
        # im2col as (C, K, N, OH, OW): the contracted axes first, so tensordot reshapes it without a copy
        slices = windows(Xp, self.kernel_size, self.stride, out)
        cols = xp.stack([xp.permute_dims(s, (1, 0, 2, 3)) for s in slices], axis=1)
        W3 = xp.reshape(W, (F, C, K))
        Y = xp.permute_dims(xp.tensordot(W3, cols, axes=([1, 2], [0, 1])), (1, 0, 2, 3))  # (N, F, OH, OW)
        if b is not None:
            Y = Y + xp.reshape(b, (F, 1, 1))

        def backprop(dY: Array, *, need_dX: bool = True) -> tuple[Array, Params]:
            dW = xp.tensordot(cols, dY, axes=([2, 3, 4], [0, 2, 3]))  # (C, K, F)
            grads = {"W": xp.reshape(xp.permute_dims(dW, (2, 0, 1)), (F, C, kh, kw))}
            if b is not None:
                grads["b"] = xp.sum(dY, axis=(0, 2, 3))
            if not need_dX:  # the first layer's dX is rarely wanted
                return None, grads
            dcols = xp.tensordot(W3, dY, axes=([0], [1]))  # (C, K, N, OH, OW)
            parts = [xp.permute_dims(dcols[:, k, ...], (1, 0, 2, 3)) for k in range(K)]
            dXp = overlap_add(xp, parts, self.kernel_size, self.stride, tuple(Xp.shape[2:]))
            return crop2d(dXp, self.pads), grads

        return Y, backprop


def _padding(padding: object, kernel: tuple[int, int], stride: tuple[int, int]) -> tuple[object, Pads]:
    """``(padding as stored, (top, bottom, left, right))`` from Conv2D's ``padding`` argument."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0, 0, 0)
        if padding != "same":
            raise ValueError(f"Conv2D: padding must be an int, a pair, 'valid' or 'same', got {padding!r}.")
        if stride != (1, 1):
            raise ValueError(
                f"Conv2D: padding='same' needs stride 1, got stride={stride}. "
                "Pass the padding as ints, e.g. padding=kernel_size // 2."
            )
        (kh, kw) = kernel  # total kernel - 1; the extra one of an even kernel on the bottom/right
        return "same", ((kh - 1) // 2, kh // 2, (kw - 1) // 2, kw // 2)
    ph, pw = as_pair("Conv2D", "padding", padding, 0)
    return (ph, pw), (ph, ph, pw, pw)
