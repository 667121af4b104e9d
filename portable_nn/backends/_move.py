"""to_backend: copy a pytree (params, grads, optimizer states) to another backend or device."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._tree import tree_map
from ._backend import Backend, to_numpy
from ._select import get_backend

__all__ = ["to_backend"]


def to_backend(tree: Any, backend: str | Backend, *, dtype: Any = None) -> Any:
    """Copy every array leaf of ``tree`` to ``backend`` (through host memory).

    The result never shares memory with ``tree``, also from a backend to
    itself: writing into a result leaf in place (``a[...] = 0``, torch's
    ``zero_()``) leaves the source as it was, and the other way round.

    Args:
        tree: a pytree of arrays of any backend and device, any shapes and
            dtypes. Leaves that are not arrays (None, Python numbers, such as
            an optimizer state's step count) are kept as they are.
        dtype: optional cast of the floating leaves, e.g. ``"float32"``;
            ``None`` keeps each leaf's dtype. Integer leaves keep theirs.

    Returns:
        A tree of the same structure whose array leaves are new arrays of
        ``backend``, each of its source's shape.

    Raises:
        BackendError: as :func:`~portable_nn.get_backend` does for ``backend``.
        PrecisionError: ``dtype``, or a leaf's dtype, is one that ``backend``'s device lacks.

    >>> import portable_nn as pnn
    >>> params = pnn.Linear(3, 2).init(seed=0, backend="numpy")
    >>> moved = pnn.to_backend(params, "array_api_strict", dtype="float64")
    >>> moved["W"].shape, moved["W"].dtype
    ((3, 2), array_api_strict.float64)
    """
    be = get_backend(backend)

    def move(a: Any) -> Any:
        if a is None or isinstance(a, (bool, int, float)):
            return a
        # to_numpy may return a view of the source (NumPy, torch on CPU, JAX, array_api_strict) and
        # be.asarray may wrap its input without copying (NumPy, torch, array_api_strict): copy in between.
        host = np.array(to_numpy(a), copy=True)
        return be.asarray(host, dtype=dtype if host.dtype.kind == "f" else None)

    return tree_map(move, tree)
