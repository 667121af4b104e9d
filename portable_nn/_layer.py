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

__all__ = ["Layer", "Backprop", "Array", "Params", "uses_host_rng", "config_key"]

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

    # --- what training code needs to know, declared by the layer itself -----------------------

    @property
    def draws_host_rng(self) -> bool:
        """True when ``apply(train=True)`` draws host random numbers (e.g. a dropout mask).

        ``jax.jit`` and ``torch.compile`` would freeze such numbers at trace time,
        so a model for which :func:`uses_host_rng` is true runs the portable code.
        Override it in a layer that draws from ``rng``; composites need not:
        their children are found by :meth:`children`.
        """
        return False

    def children(self) -> tuple[Layer, ...]:
        """The sub-layers this layer applies: every attribute that is a Layer, or a list/tuple of them.

        Override it when a layer keeps its sub-layers somewhere else (a dict, say).
        """
        found: list[Layer] = []
        for value in vars(self).values():
            if isinstance(value, Layer):
                found.append(value)
            elif isinstance(value, (list, tuple)):
                found.extend(v for v in value if isinstance(v, Layer))
        return tuple(found)


def no_grads(dX: Array) -> tuple[Array, Params]:
    """The backprop of a layer that is the identity (e.g. Dropout at inference)."""
    return dX, {}


def uses_host_rng(layer: Layer) -> bool:
    """True when ``layer`` or any layer inside it draws host random numbers while training."""
    return layer.draws_host_rng or any(uses_host_rng(child) for child in layer.children())


def config_key(layer: Layer) -> tuple[Any, ...]:
    """A hashable key of a layer's whole configuration: its type and every attribute, recursively.

    Compiled training loops are cached under this key, so a setting changed in
    place (``ln.eps = 10.0``) compiles a new loop instead of reusing a stale
    one. It is derived from the attributes, not from ``repr``, so a layer whose
    repr omits a setting (or a user layer with the default repr) is still keyed right.
    """
    return (type(layer), tuple(sorted((k, _key(v)) for k, v in vars(layer).items())))


def _key(value: Any) -> Any:
    if isinstance(value, Layer):
        return config_key(value)
    if isinstance(value, (list, tuple)):
        return (type(value), tuple(_key(v) for v in value))
    if isinstance(value, dict):
        return (dict, tuple(sorted((repr(k), _key(v)) for k, v in value.items())))
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    return (type(value), id(value))  # functions, arrays, other objects: by identity
