"""The Layer protocol: a pair of pure functions, ``init`` and ``apply``.

``apply(params, X)`` returns ``(Y, backprop)``; ``backprop(dY)`` returns
``(dX, grads)`` with ``grads`` shaped like ``params``. Nothing is cached on
the layer object, so a layer can be applied any number of times.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._backend import Backend
from ._check import dtype_name
from ._rng import Seed, host_rng
from ._select import get_backend

__all__ = ["Layer", "Backprop", "Array", "Params"]

Array = Any
Params = Any
Backprop = Callable[..., tuple[Array, Params]]  # backprop(dY) -> (dX, grads); some take need_dX=False


class Layer:
    """Base class of all layers. Subclasses override ``init_params`` and ``apply``.

    ``skips_dX``: True when this layer's backprop accepts ``need_dX=False``
    and then skips computing dX (returning None), e.g. for a model's first layer.
    """

    skips_dX = False

    def init(self, seed: Seed = 0, *, backend: str | Backend | None = None, dtype: Any = "float32") -> Params:
        """Draw this layer's initial params.

        Args:
            seed: int seed or ``numpy.random.Generator``; one seed gives
                bit-identical weights on every backend.
            backend: where to put the arrays; ``None`` is the default backend.
            dtype: ``"float32"`` (default) or ``"float64"``.

        Returns:
            A pytree (dict, or list of dicts for :class:`Sequential`) of arrays.
        """
        be = get_backend(backend)
        name = dtype_name(be.dtype(dtype))
        if name not in ("float16", "float32", "float64"):
            raise TypeError(f"{self!r}.init: dtype must be a floating dtype such as 'float32', got {name!r}.")
        return self.init_params(host_rng(seed), be, name)

    def init_params(self, rng: np.random.Generator, be: Backend, dtype: str) -> Params:
        """Draw params on the host from ``rng``; ``dtype`` is a name like ``"float32"``."""
        return {}

    def apply(
        self, params: Params, X: Array, *, train: bool = False, rng: Seed = None
    ) -> tuple[Array, Backprop]:
        """Forward pass. Returns ``(Y, backprop)``; see the module docstring."""
        raise NotImplementedError

    def __call__(self, params: Params, X: Array, **kwargs: Any) -> Array:
        """``layer(params, X)`` is ``layer.apply(params, X)[0]``: inference only."""
        return self.apply(params, X, **kwargs)[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def no_grads(dX: Array) -> tuple[Array, Params]:
    """The backprop of a layer that is the identity (e.g. Dropout at inference)."""
    return dX, {}
