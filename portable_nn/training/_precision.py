"""Mixed precision: half-precision compute (``bfloat16``, ``float16``) over float32 master params.

What runs in which dtype, for ``fit(..., precision=...)`` (and ``compile_step``,
``predict``, ``evaluate``), as PyTorch's AMP does it:

- the params (and the optimizer state) stay in their own dtype, the float32
  "master" weights; each step casts the trainable params and a float batch to
  the compute dtype (integer X, token ids, stays as it is; a model state such
  as BatchNorm's running statistics stays in the master dtype);
- the layers' forward and backward run in the compute dtype, except what a
  layer declares in :attr:`~portable_nn.Layer.float32_ops` (LayerNorm's and
  BatchNorm's statistics, softmax): those it runs in float32 itself;
- the model's output is cast to the master dtype before the loss, so the loss
  value and its gradient (the softmax inside a cross-entropy too) are float32;
- with a loss scale (:class:`~portable_nn.optim.DynamicLossScale`, the default
  for float16) dY is multiplied by the scale before the backward pass;
- the grads are cast back to the master dtype for the optimizer, which
  unscales them (a loss scale) and updates the master params.
"""

from __future__ import annotations

from typing import Any

import array_api_compat

from .._check import HALF_PRECISIONS, dtype_name, is_float
from .._tree import tree_leaves, tree_map
from ..backends import Backend, adapter_of, namespace
from ..layers.base import Array, Params, Variables, trainable
from ..optim import DynamicLossScale, LossScaleState

__all__ = ["check_precision", "compute_dtype", "infer", "loss_scale_of", "to_dtype", "with_loss_scale"]


def check_precision(where: str, precision: Any, params: Params) -> str | None:
    """``precision`` checked against the params (their backend, device and dtype) before any work.

    Raises:
        ValueError: not None, ``"bfloat16"`` or ``"float16"``; or (a
            :class:`~portable_nn.PrecisionError`) the params' backend or
            device cannot compute in it, naming the backend, the precision and
            what to install or choose instead.
        TypeError: the params are not float32 or float64 (the master dtype
            must be wider than the compute dtype).
    """
    if precision is None:
        return None
    if precision not in HALF_PRECISIONS:
        raise ValueError(f"{where}: precision must be None, 'bfloat16' or 'float16', got {precision!r}.")
    leaves = tree_leaves(trainable(params))
    if not leaves:
        raise ValueError(f"{where}: precision={precision!r} needs params; pass the result of model.init(...).")
    leaf = leaves[0]
    master = dtype_name(leaf.dtype)
    if master not in ("float32", "float64"):
        raise TypeError(
            f"{where}: precision={precision!r} keeps the params as float32 master weights and computes in "
            f"{precision}, but the params are {master}. Init the model with dtype='float32'."
        )
    ad = adapter_of(leaf)
    assert ad is not None
    Backend(ad.name, namespace(leaf), array_api_compat.device(leaf)).dtype(precision)  # raises PrecisionError
    return str(precision)


def compute_dtype(like: Array, precision: str) -> Any:
    """The dtype object of ``precision`` in ``like``'s library."""
    ad = adapter_of(like)
    assert ad is not None
    return ad.precision_dtype(namespace(like), precision)


def to_dtype(tree: Any, dtype: Any) -> Any:
    """The floating leaves of ``tree`` cast to ``dtype`` (integer leaves, and non-arrays, as they are)."""
    def cast(a: Any) -> Any:
        if not hasattr(a, "dtype"):
            return a
        xp = namespace(a)
        return xp.astype(a, dtype) if is_float(xp, a.dtype) and a.dtype != dtype else a

    return tree_map(cast, tree)


def loss_scale_of(state: Any) -> Any:
    """The loss scale of a :class:`~portable_nn.optim.LossScaleState` (None for any other state)."""
    return state.scale if isinstance(state, LossScaleState) else None


def with_loss_scale(optimizer: Any, precision: str | None) -> Any:
    """``optimizer`` wrapped in :class:`~portable_nn.optim.DynamicLossScale` for float16 (its default), as given
    otherwise: bfloat16 has float32's range and needs no scaling."""
    if precision == "float16" and not isinstance(optimizer, DynamicLossScale):
        return DynamicLossScale(optimizer)
    return optimizer


def master_params(params: Params, low: Params) -> Params:
    """``low`` (the half-precision params a forward pass ran on, with its new model state) with the master
    params back in place of the cast ones."""
    if type(low) is Variables:
        return Variables(trainable(params), low.state)
    return params


def infer(model: Any, params: Params, X: Array, precision: str | None) -> Array:
    """``model(params, X)`` (inference), in ``precision`` when given: the trainable params and a float X cast
    to it, the output cast back to the params' dtype."""
    if precision is None:
        return model(params, X)
    low = compute_dtype(X, precision)
    run = to_dtype(trainable(params), low)
    Y = model(Variables(run, params.state) if type(params) is Variables else run, to_dtype(X, low))
    return namespace(Y).astype(Y, tree_leaves(trainable(params))[0].dtype)
