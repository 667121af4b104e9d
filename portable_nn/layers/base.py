"""The public API for layer authors: the Layer protocol and the checks every layer uses.

A layer is a pair of pure functions. ``init_params(rng, be, dtype)`` draws
its params (a dict of arrays) on the host; ``apply(params, X, *, train=False,
rng=None)`` returns ``(Y, backprop)``, and ``backprop(dY, *, need_dX=True)``
returns ``(dX, grads)`` with ``grads`` shaped like ``params`` (``dX`` may be
None when ``need_dX`` is False: a model's first layer). Nothing is cached on
the layer object, so a layer can be applied any number of times.

What the training code needs to know, the layer declares: its sub-layers
(:meth:`~portable_nn.Layer.children`), whether it draws host random numbers
(:attr:`~portable_nn.Layer.draws_host_rng`), whether it keeps a model state
(:attr:`~portable_nn.Layer.stateful`), whether it takes integer indices rather than
floats (:attr:`~portable_nn.Layer.takes_indices`: an embedding; ``fit``, ``predict`` and
``evaluate`` then pass integer X through uncast), and its configuration
(:func:`config_key`).

Model state (Haiku's ``transform_with_state`` split): values a layer updates
while training but the optimizer never touches, such as BatchNorm's running
statistics. A stateful layer adds ``init_state(be, dtype)`` and
``apply_with_state(params, state, X, *, train, rng) -> (Y, new_state,
backprop)``. For a model that contains one, ``init`` returns
:class:`Variables` ``(params, state)``, one pytree that ``fit``, ``predict``,
``evaluate``, ``save``/``load`` and ``to_backend`` carry as they carry params;
the optimizer sees ``variables.params`` only. Models without state are
unchanged: ``init`` returns their params.

Checks: :func:`check_array` for inputs, :func:`check_params` for params.
The guide's "Writing a layer" (``docs/guide/writing-a-layer.md``) has a complete example.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from .._check import as_indices, check_array, check_int, dtype_name, is_half, real_number, upcast
from .._rng import Seed, host_rng
from ..backends import Backend, get_backend

__all__ = [
    "Array",
    "Backprop",
    "Layer",
    "Params",
    "Seed",
    "State",
    "Variables",
    "apply_model",
    "as_indices",
    "check_array",
    "check_int",
    "check_params",
    "config_key",
    "dtype_name",
    "has_state",
    "is_half",
    "no_grads",
    "real_number",
    "run_backprop",
    "takes_indices",
    "trainable",
    "upcast",
    "uses_host_rng",
]

Array = Any
"""An array of any Array API library (NumPy, CuPy, torch, JAX, array-api-strict)."""
Params = Any
"""A pytree (dicts, lists, tuples) of arrays."""
Backprop = Callable[..., tuple[Array, Params]]
"""``backprop(dY, *, need_dX=True) -> (dX, grads)``; ``dX`` may be None when ``need_dX`` is False."""
State = Any
"""A pytree of arrays a layer updates in training without the optimizer (``{}`` for a layer without state)."""


class Variables(NamedTuple):
    """A stateful model's trainable ``params`` and its ``state`` (e.g. BatchNorm's running statistics): a NamedTuple.

    ``model.init()`` returns this for a model that contains a stateful layer;
    pass it wherever params go (``fit``, ``predict``, ``evaluate``, ``save``,
    ``to_backend``, ``model(variables, X)``). Optimizers see ``variables.params``
    only: ``opt.init(variables.params)``.
    """

    params: Params
    state: State


class Layer:
    """Base class of all layers. Subclasses override ``init_params`` (if they have params) and ``apply``.

    A layer is a pair of pure functions: :meth:`init` draws params on the host
    and :meth:`apply` returns ``(Y, backprop)``, with ``backprop(dY, *,
    need_dX=True) -> (dX, grads)`` written beside the forward pass; ``layer(params,
    X)`` is inference only. See :mod:`portable_nn.layers.base` for the protocol
    and the guide's "Writing a layer" (``docs/guide/writing-a-layer.md``) for a complete example.
    """

    def init(self, seed: Seed = 0, *, backend: str | Backend | None = None, dtype: Any = "float32") -> Params:
        """Draw this layer's initial params.

        Args:
            seed: int seed or ``numpy.random.Generator``; one seed gives
                bit-identical weights on every backend.
            backend: where to put the arrays; ``None`` is the default backend.
            dtype: ``"float32"`` (default) or ``"float64"``.

        Returns:
            A pytree (dict, or list of dicts for :class:`~portable_nn.Sequential`) of arrays
            of ``dtype`` on ``backend``; for a model with a stateful layer
            (BatchNorm), ``Variables(params, state)``. The same seed gives
            bit-identical values on every backend and device.

        Raises:
            TypeError: ``dtype`` is not a floating dtype; ``seed`` is not an int, Generator or None.
            BackendError: an unknown or missing backend; a dtype its device lacks (PrecisionError).
        """
        be = get_backend(backend)
        name = dtype_name(be.dtype(dtype))
        if name == "bfloat16":
            raise TypeError(
                f"{self!r}.init: params are float16, float32 or float64, got dtype 'bfloat16'. For bfloat16 "
                "compute, init in float32 (the master weights) and pass precision='bfloat16' to fit, predict, "
                "evaluate or compile_step."
            )
        if name not in ("float16", "float32", "float64"):
            raise TypeError(f"{self!r}.init: dtype must be a floating dtype such as 'float32', got {name!r}.")
        params = self.init_params(host_rng(seed), be, name)
        return Variables(params, self.init_state(be, name)) if has_state(self) else params

    def init_params(self, rng: np.random.Generator, be: Backend, dtype: str) -> Params:
        """Draw params on the host from ``rng``; ``dtype`` is a name like ``"float32"``."""
        return {}

    def apply(
        self, params: Params, X: Array, *, train: bool = False, rng: Seed = None
    ) -> tuple[Array, Backprop]:
        """Forward pass: ``(Y, backprop)``, with ``backprop(dY, *, need_dX=True) -> (dX, grads)``.

        ``train`` selects training behaviour (dropout masks, batch statistics);
        ``rng`` seeds what a layer draws while training. ``grads`` mirror
        ``params``; ``dX`` may be None when ``need_dX`` is False.
        """
        raise NotImplementedError

    def __call__(self, params: Params, X: Array, **kwargs: Any) -> Array:
        """``layer(params, X)`` is ``layer.apply(params, X)[0]``: inference only.

        ``params`` may be the :class:`Variables` of a stateful model.
        """
        return apply_model(self, params, X, **kwargs)[0]

    # --- model state (BatchNorm's running statistics); see the module docstring ----------------

    @property
    def stateful(self) -> bool:
        """Whether this layer itself keeps a model state (override with ``init_state`` and
        ``apply_with_state``). Composites need not: :func:`~portable_nn.layers.base.has_state` finds their children's."""
        return False

    def init_state(self, be: Backend, dtype: str) -> State:
        """This layer's initial state on ``be`` in ``dtype`` (``{}``: no state of its own)."""
        return {}

    def apply_with_state(
        self, params: Params, state: State, X: Array, *, train: bool = False, rng: Seed = None
    ) -> tuple[Array, State, Backprop]:
        """Forward pass with a model state: ``(Y, new_state, backprop)``; grads mirror ``params`` only.

        The default serves layers without state of their own: ``apply``, with
        ``state`` passed through. A composite whose children have state must
        override it and thread each child's state (see :class:`Sequential`).
        """
        if has_state(self):
            raise TypeError(
                f"{self!r} contains layers with a model state (e.g. BatchNorm) but does not override "
                "apply_with_state(params, state, X, *, train, rng) to pass each its state. "
                "Override it as Sequential does, or use Sequential."
            )
        Y, backprop = self.apply(params, X, train=train, rng=rng)
        return Y, state, backprop

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # --- what training code needs to know, declared by the layer itself -----------------------

    float32_ops: tuple[str, ...] = ()
    """What this layer computes in float32 when its input is half precision, in words.

    Under mixed precision (``fit(..., precision="bfloat16")``) X is bfloat16 or
    float16; LayerNorm declares ``("mean and variance",)``. The layer does the
    upcast itself (:func:`~portable_nn.layers.base.upcast`) and returns Y, dX
    and grads in the dtypes of X and of its params; the tuple only declares it,
    for the documentation's table of which op runs in which dtype. Empty for a
    layer that computes everything in its input's dtype."""

    @property
    def takes_indices(self) -> bool:
        """Whether this layer's X holds integer indices (token ids) rather than floats, as an embedding's does.

        ``fit``, ``predict`` and ``evaluate`` keep integer X as it is for such a
        model (it is never cast to the params' float dtype), and ``gradcheck``
        checks no dX. Check such input with ``check_array(self, X, like=W,
        kind="index")``, then widen it with ``X = as_indices(xp, X)`` before any
        index arithmetic (ids may come as ``uint8``). A composite takes what its first layer takes (see
        :class:`Sequential`); override it in a composite of another shape.
        """
        return False

    @property
    def draws_host_rng(self) -> bool:
        """Whether ``apply(train=True)`` draws host random numbers (e.g. a dropout mask).

        ``jax.jit`` and ``torch.compile`` would freeze such numbers at trace time,
        so a model for which :func:`~portable_nn.layers.base.uses_host_rng` is true runs the portable code.
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


def no_grads(dX: Array, *, need_dX: bool = True) -> tuple[Array, Params]:
    """The backprop of a layer that is the identity (e.g. Dropout at inference): ``(dX, {})`` with ``dX = dY``."""
    return dX, {}


def check_params(layer: Layer, params: Params, shapes: Mapping[str, tuple[int, ...]]) -> tuple[Array, ...]:
    """Check that ``params`` is a dict of arrays with exactly these keys and shapes; return them in order.

    Args:
        layer: the layer (its repr names it in messages).
        params: what ``apply`` was given.
        shapes: key -> required shape, e.g. ``{"W": (3, 2), "b": (2,)}``; ``{}`` for a layer without params.

    Returns:
        The arrays, in the order of ``shapes``.

    Raises:
        TypeError: not a dict, or a value that is not an array.
        ValueError: other keys or shapes than ``shapes`` (params of another layer or model).
    """
    try:  # fast path: the params this layer made (attribute reads only; a plain loop, no generators)
        if type(params) is dict and len(params) == len(shapes):
            values = []
            for k, s in shapes.items():
                v = params[k]
                if tuple(v.shape) != s:
                    break
                values.append(v)
            else:
                return tuple(values)
    except (KeyError, AttributeError, TypeError):
        pass
    wanted = " and ".join(f"{k} {s}" for k, s in shapes.items()) or "no params ({})"
    if not isinstance(params, dict):
        raise TypeError(
            f"{layer!r}: params must be a dict with {wanted}, got {type(params).__name__}. "
            "Use the params from model.init(...)."
        )
    for key, value in params.items():
        if not (hasattr(value, "shape") and hasattr(value, "dtype")):
            raise TypeError(
                f"{layer!r}: params[{key!r}] must be an array, got {type(value).__name__}. "
                "Use the params from model.init(...)."
            )
    got = {k: tuple(v.shape) for k, v in params.items()}
    raise ValueError(
        f"{layer!r}: params do not fit this layer: expected {wanted}, got {got}. "
        "Were they made by another model? Re-run model.init(...)."
    )


def run_backprop(backprop: Backprop, dY: Array, need_dX: bool) -> tuple[Array, Params]:
    """``backprop(dY, need_dX=need_dX)``, also for a user layer written before ``need_dX`` existed.

    Such a backprop (``def backprop(dY)``) is called without it, with a DeprecationWarning.
    """
    if need_dX:
        return backprop(dY)
    try:
        return backprop(dY, need_dX=False)
    except TypeError as e:
        if "need_dX" not in str(e):
            raise
        warnings.warn(
            f"a backprop without the need_dX keyword ({e}); write it as backprop(dY, *, need_dX=True).",
            DeprecationWarning,
            stacklevel=3,
        )
        return backprop(dY)


def uses_host_rng(layer: Layer) -> bool:
    """True when ``layer`` or any layer inside it draws host random numbers while training."""
    return layer.draws_host_rng or any(uses_host_rng(child) for child in layer.children())


def takes_indices(layer: Layer) -> bool:
    """True when ``layer``'s input X holds integer indices (see :attr:`~portable_nn.Layer.takes_indices`)."""
    return bool(layer.takes_indices)


def has_state(layer: Layer) -> bool:
    """True when ``layer`` or any layer inside it keeps a model state (e.g. BatchNorm)."""
    return layer.stateful or any(has_state(child) for child in layer.children())


def trainable(params: Params) -> Params:
    """The part of ``params`` the optimizer trains: ``variables.params`` for :class:`~portable_nn.Variables`, else ``params``."""
    return params.params if type(params) is Variables else params


def apply_model(
    model: Layer, params: Params, X: Array, *, train: bool = False, rng: Seed = None
) -> tuple[Array, Params, Backprop]:
    """Run ``model`` on params or :class:`Variables`: ``(Y, new_params, backprop)``.

    For Variables, ``new_params`` carries the state this forward pass produced
    (running statistics updated when ``train``); plain params come back as they
    are. ``backprop``'s grads mirror the trainable params in both cases. X and
    Y are the model's input and output, of the params' backend and dtype.
    """
    if type(params) is Variables:
        Y, state, backprop = model.apply_with_state(params.params, params.state, X, train=train, rng=rng)
        return Y, Variables(params.params, state), backprop
    Y, backprop = model.apply(params, X, train=train, rng=rng)
    return Y, params, backprop


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
