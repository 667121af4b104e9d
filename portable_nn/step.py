"""One training step, shared by fit, compare and bench, with an optional compiled fast path.

``compile_step(model, loss, optimizer)`` returns a callable
``step(params, state, X, T) -> (params, state, loss)``. The portable version
runs the layers' forward and backprop closures as written. With
``compile=True`` (the default on JAX) the same Python code is traced once by
``jax.jit``; results agree with the portable path to rounding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._backend import namespace
from ._layer import Array, Layer, Params
from ._rng import Seed
from ._tree import tree_leaves

__all__ = ["compile_step", "TrainStep", "grads_and_loss", "n_correct"]


def _forward_backward(
    model: Layer, loss: Callable[..., Any], params: Params, X: Array, T: Array, rng: Seed
) -> tuple[Array, Array, Params]:
    """``(Y, loss value, grads)``; the input's dX is not computed where the model can skip it."""
    Y, backprop = model.apply(params, X, train=True, rng=rng)
    value, dY = loss(Y, T)
    _, grads = backprop(dY, need_dX=False) if model.skips_dX else backprop(dY)
    return Y, value, grads


def grads_and_loss(
    model: Layer, loss: Callable[..., Any], params: Params, X: Array, T: Array, rng: Seed = None
) -> tuple[Array, Array, Params, Array]:
    """Forward, loss and backprop on one batch.

    Returns:
        ``(loss_value, Y, grads, check)``: the 0-d loss, the model output,
        grads shaped like ``params``, and ``check = loss + sum of all grads``,
        a 0-d array that is finite iff the loss and every gradient are finite
        (one value to copy to the host per step).
    """
    Y, value, grads = _forward_backward(model, loss, params, X, T, rng)
    xp = namespace(value)
    check = value
    for g in tree_leaves(grads):
        check = check + xp.sum(g)
    return value, Y, grads, check


def n_correct(xp: Any, Y: Array, T: Array) -> Array | None:
    """Correct predictions (argmax of Y (N, C)) for integer labels T (N,); None for other targets."""
    if not xp.isdtype(T.dtype, "integral") or Y.ndim != 2:
        return None
    return xp.sum(xp.astype(xp.argmax(Y, axis=1) == T, xp.int32))


def _has_dropout(model: Layer) -> bool:
    from .dropout import Dropout

    if isinstance(model, Dropout):
        return model.rate > 0
    return any(_has_dropout(layer) for layer in getattr(model, "layers", ()))


class TrainStep:
    """``step(params, state, X, T) -> (params, state, loss)``; see :func:`compile_step`."""

    def __init__(self, model: Layer, loss: Callable[..., Any], optimizer: Any, compile: bool | None) -> None:
        if compile not in (None, True, False):
            raise TypeError(f"compile must be None, True or False, got {compile!r}.")
        self.model, self.loss, self.optimizer, self.compile = model, loss, optimizer, compile
        self._jitted: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"TrainStep({self.model!r}, {getattr(self.loss, '__name__', self.loss)!r}, {self.optimizer!r})"

    def uses_jit(self, X: Array) -> bool:
        """True when this step runs through ``jax.jit`` for inputs like ``X``."""
        import array_api_compat

        if type(X) is np.ndarray and not self.compile:
            return False
        if not array_api_compat.is_jax_array(X):
            if self.compile:
                raise ValueError(
                    f"compile_step: compile=True needs JAX arrays, got {type(X).__name__}. "
                    "Use compile=None (portable everywhere, jit on JAX) or the 'jax' backend."
                )
            return False
        if self.compile is False:
            return False
        if _has_dropout(self.model):
            if self.compile:
                raise ValueError(
                    f"compile_step: {self.model!r} has Dropout, whose host-drawn masks cannot be "
                    "traced by jax.jit. Use compile=False (or None) for models with dropout."
                )
            return False
        return True

    def _fn(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        if name not in self._jitted:
            import jax

            self._jitted[name] = jax.jit(fn)
        return self._jitted[name]  # type: ignore[no-any-return]

    def grads(self, params: Params, X: Array, T: Array, rng: Seed = None) -> tuple[Array, Array, Params, Array]:
        """:func:`grads_and_loss` for this model and loss (jitted on JAX when compiling)."""
        if self.uses_jit(X):
            return self._fn("grads", lambda p, x, t: grads_and_loss(self.model, self.loss, p, x, t))(params, X, T)  # type: ignore[no-any-return]
        return grads_and_loss(self.model, self.loss, params, X, T, rng)

    def update(self, params: Params, grads: Params, state: Any, X: Array) -> tuple[Params, Any]:
        """``optimizer.step`` (jitted on JAX when compiling)."""
        if self.uses_jit(X):
            return self._fn("update", self.optimizer.step)(params, grads, state)  # type: ignore[no-any-return]
        return self.optimizer.step(params, grads, state)  # type: ignore[no-any-return]

    def __call__(self, params: Params, state: Any, X: Array, T: Array, rng: Seed = None) -> tuple[Params, Any, Array]:
        """One step on batch ``(X, T)``. Returns new params, new state and the loss *before* the update."""
        if self.uses_jit(X):
            return self._fn("step", self._step)(params, state, X, T)  # type: ignore[no-any-return]
        return self._step(params, state, X, T, rng)

    def _step(self, params: Params, state: Any, X: Array, T: Array, rng: Seed = None) -> tuple[Params, Any, Array]:
        _, value, grads = _forward_backward(self.model, self.loss, params, X, T, rng)
        params, state = self.optimizer.step(params, grads, state)
        return params, state, value


def compile_step(
    model: Layer, loss: Callable[..., Any], optimizer: Any, *, compile: bool | None = None
) -> TrainStep:
    """A training step for ``model``, ``loss`` and ``optimizer``.

    Args:
        compile: ``None`` (default) jits the step with ``jax.jit`` on JAX arrays
            (unless the model has dropout) and runs the portable code elsewhere;
            ``True`` requires jitting (raises on other backends or with
            dropout); ``False`` always runs the portable code.

    Returns:
        ``step(params, state, X, T, rng=None) -> (params, state, loss)`` with
        X ``(batch, features)``, T the targets, loss a 0-d array.

    Example:
        >>> step = pnn.compile_step(model, pnn.losses.softmax_cross_entropy, opt)
        >>> for X, T in batches:
        ...     params, state, loss = step(params, state, X, T)
    """
    return TrainStep(model, loss, optimizer, compile)
