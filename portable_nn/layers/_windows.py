"""Sliding 2-D windows over NCHW images, shared by Conv2D and the pooling layers.

Portable: Array API operations only. Padding is ``concat`` with a constant
(zeros; ``-inf`` for max pooling; the standard has no ``pad``); ``windows`` takes one strided slice per kernel
offset (im2col without ``stride_tricks``); ``overlap_add`` is its adjoint
(col2im), built by padding each offset's part into place and summing, so no
array is ever written in place (JAX arrays cannot be, and the caller's must not be).

Offsets are numbered row-major: offset ``k`` is kernel row ``k // kw``, column ``k % kw``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import array_api_compat

from .._check import check_array, check_int
from .base import Array

__all__ = [
    "IMAGES",
    "Pads",
    "Pair",
    "as_pair",
    "check_images",
    "crop2d",
    "output_size",
    "overlap_add",
    "pad2d",
    "short_pair",
    "windows",
]

IMAGES = "(batch, channels, height, width)"
Pair = tuple[int, int]
Pads = tuple[int, int, int, int]
"""``(top, bottom, left, right)`` zero rows/columns around each image."""


def as_pair(where: str, name: str, value: Any, lo: int) -> Pair:
    """``value`` (an int or a pair of ints, each ``>= lo``) as ``(height, width)``.

    Raises:
        TypeError: not an int or a pair of ints; ValueError: a value below ``lo``.
    """
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise TypeError(f"{where}: {name} must be an int or a pair (height, width), got {value!r}.")
        return check_int(where, f"{name}[0]", value[0], lo), check_int(where, f"{name}[1]", value[1], lo)
    size = check_int(where, name, value, lo)
    return size, size


def short_pair(pair: object) -> object:
    """``3`` for ``(3, 3)``: how a repr shows a square kernel, stride or padding."""
    if isinstance(pair, tuple) and len(pair) == 2 and pair[0] == pair[1]:
        return pair[0]
    return pair


def check_images(layer: Any, X: Array, *, like: Array = None, channels: int | None = None) -> Any:
    """Check that ``X`` is a float ``(batch, channels, height, width)`` array; return its namespace."""
    xp = check_array(layer, X, like=like, ndim=4, axes=IMAGES)
    if channels is not None and X.shape[1] != channels:
        raise ValueError(
            f"{layer!r}: X must have {channels} channels on axis 1 of {IMAGES}, got shape "
            f"{tuple(X.shape)}. Check the layer's in_channels against the data (layout NCHW)."
        )
    return xp


def output_size(
    layer: Any, shape: Sequence[int], kernel: Pair, stride: Pair, pads: Pads, *, max_padding: Pair | None = None
) -> Pair:
    """``(out_height, out_width)`` of windows over images of ``shape`` padded by ``pads``.

    Args:
        max_padding: the most padding ``layer`` accepts per side (None: no limit); the
            error suggests a padding only within it.

    Raises:
        ValueError: the kernel is larger than the padded image; it suggests a smaller
            kernel_size, larger images, or the padding that would fit.
    """
    height, width = shape[2] + pads[0] + pads[1], shape[3] + pads[2] + pads[3]
    if kernel[0] > height or kernel[1] > width:
        padded = f" (padded by {pads} as (top, bottom, left, right))" if any(pads) else ""
        need = (max(0, -(-(kernel[0] - shape[2]) // 2)), max(0, -(-(kernel[1] - shape[3]) // 2)))
        fits = max_padding is None or (need[0] <= max_padding[0] and need[1] <= max_padding[1])
        advice = f", or padding={short_pair(need)!r} on each side" if fits else ""
        raise ValueError(
            f"{layer!r}: kernel {kernel[0]}x{kernel[1]} is larger than the input {height}x{width}"
            f"{padded}; X has shape {tuple(shape)} {IMAGES}. Use a smaller kernel_size, larger images{advice}."
        )
    return (height - kernel[0]) // stride[0] + 1, (width - kernel[1]) // stride[1] + 1


def _full(xp: Any, X: Array, height: int, width: int, value: float = 0.0) -> Array:
    shape = (X.shape[0], X.shape[1], height, width)
    return xp.full(shape, value, dtype=X.dtype, device=array_api_compat.device(X))


def pad2d(xp: Any, X: Array, pads: Pads, value: float = 0.0) -> Array:
    """``X`` (N, C, H, W) with ``pads = (top, bottom, left, right)`` rows/columns of ``value`` around each image."""
    top, bottom, left, right = pads
    if left or right:
        X = xp.concat([_full(xp, X, X.shape[2], left, value), X, _full(xp, X, X.shape[2], right, value)], axis=3)
    if top or bottom:
        X = xp.concat([_full(xp, X, top, X.shape[3], value), X, _full(xp, X, bottom, X.shape[3], value)], axis=2)
    return X


def crop2d(X: Array, pads: Pads) -> Array:
    """The inverse of :func:`pad2d`: drop ``pads`` rows/columns around each image."""
    top, bottom, left, right = pads
    return X[:, :, top : X.shape[2] - bottom, left : X.shape[3] - right]


def windows(X: Array, kernel: Pair, stride: Pair, out: Pair) -> list[Array]:
    """One ``(N, C, out_h, out_w)`` strided slice of ``X`` per kernel offset, row-major (im2col).

    Slice ``k`` (offset ``(i, j)``) is ``X[:, :, i : i + sh * out_h : sh, j : j + sw * out_w : sw]``:
    at ``[n, c, a, b]`` the element at offset ``(i, j)`` of the window whose
    top-left corner is ``(sh * a, sw * b)``. It is taken as a plain slice,
    at ``(i // sh, j // sw)``, of the phase grid ``X[:, :, i % sh :: sh, j % sw :: sw]``
    (one strided slice per phase, as in :func:`overlap_add`): offsets then
    share slices of one shape, which JAX compiles once.
    """
    (kh, kw), (sh, sw), (oh, ow) = kernel, stride, out
    grids: dict[Pair, Array] = {}
    slices = []
    for i in range(kh):
        for j in range(kw):
            (qi, pi), (qj, pj) = divmod(i, sh), divmod(j, sw)
            if (pi, pj) not in grids:
                grids[pi, pj] = X[:, :, pi::sh, pj::sw] if (sh, sw) != (1, 1) else X
            slices.append(grids[pi, pj][:, :, qi : qi + oh, qj : qj + ow])
    return slices


def overlap_add(xp: Any, parts: Sequence[Array], kernel: Pair, stride: Pair, size: Pair) -> Array:
    """The adjoint of :func:`windows` (col2im): sum each offset's part back where it was read from.

    Args:
        parts: one ``(N, C, out_h, out_w)`` array per kernel offset, row-major.
        size: ``(height, width)`` of the images ``windows`` read (padded, if they were).

    Returns:
        ``(N, C, height, width)``; elements no window covers are zero.

    With stride ``(sh, sw)`` the positions offset ``(i, j)`` touches all lie on
    the phase grid ``[i % sh :: sh, j % sw :: sw]``, shifted by ``(i // sh, j // sw)``
    there. Each phase grid is a sum of zero-padded parts; the grids are then
    interleaved with one stack and reshape. Work: one padded grid per offset,
    each ``1 / (sh * sw)`` of the image.
    """
    kw, (sh, sw), (height, width) = kernel[1], stride, size
    n, c, oh, ow = parts[0].shape
    gh, gw = -(-height // sh), -(-width // sw)  # phase grid size: ceil(size / stride)
    grids: dict[Pair, Array] = {}
    for k, part in enumerate(parts):
        (qi, pi), (qj, pj) = divmod(k // kw, sh), divmod(k % kw, sw)
        placed = pad2d(xp, part, (qi, gh - oh - qi, qj, gw - ow - qj))
        grids[pi, pj] = grids[pi, pj] + placed if (pi, pj) in grids else placed
    if (sh, sw) == (1, 1):
        return grids[0, 0]
    zero = _full(xp, parts[0], gh, gw)
    rows = [xp.stack([grids.get((pi, pj), zero) for pj in range(sw)], axis=-1) for pi in range(sh)]
    full = xp.reshape(xp.stack(rows, axis=3), (n, c, gh * sh, gw * sw))  # (n, c, gh, sh, gw, sw) merged
    return full[:, :, :height, :width]
