"""One training step, shared by fit, compare and bench, with an optional compiled fast path.

``compile_step(model, loss, optimizer)`` returns a callable
``step(params, state, X, T) -> (params, state, loss)``. The portable version
runs the layers' forward and backprop closures as written. The same Python
code can instead be traced once and compiled: by ``jax.jit`` (the default on
JAX) or, with ``compile=True``, by ``torch.compile``; results agree with the
portable path to rounding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._check import dtype_name
from .._rng import Seed
from .._tree import tree_leaves
from ..backends import adapter_of, namespace
from ..layers.base import Array, Layer, Params, Variables, apply_model, run_backprop, uses_host_rng

__all__ = ["compile_step", "TrainStep", "grads_and_loss", "finite_check", "fit_step", "n_correct"]


def _forward_backward(
    model: Layer, loss: Callable[..., Any], params: Params, X: Array, T: Array, rng: Seed
) -> tuple[Array, Array, Params, Params]:
    """``(Y, loss value, grads, params with the new model state)``; grads mirror the trainable params.

    The input's dX is not computed where the model can skip it.
    """
    Y, params, backprop = apply_model(model, params, X, train=True, rng=rng)
    value, dY = loss(Y, T)
    _, grads = run_backprop(backprop, dY, need_dX=False)
    return Y, value, grads, params


def _update(optimizer: Any, params: Params, grads: Params, state: Any) -> tuple[Params, Any]:
    """The optimizer's step on the trainable params; a model state (``Variables.state``) rides along."""
    if type(params) is Variables:
        new, state = optimizer.step(params.params, grads, state)
        return Variables(new, params.state), state
    return optimizer.step(params, grads, state)  # type: ignore[no-any-return]


def grads_and_loss(
    model: Layer, loss: Callable[..., Any], params: Params, X: Array, T: Array, rng: Seed = None
) -> tuple[Array, Array, Params]:
    """Forward, loss and backprop on one batch.

    Returns:
        ``(loss_value, Y, grads)``: the 0-d loss, the model output and grads shaped like the
        trainable params (``variables.params`` for a stateful model).
    """
    Y, value, grads, _ = _forward_backward(model, loss, params, X, T, rng)
    return value, Y, grads


def fit_step(
    model: Layer, loss: Callable[..., Any], optimizer: Any, params: Params, state: Any, X: Array, T: Array,
    rng: Seed = None, check: bool = True,
) -> tuple[Array, Array, Params, Any, Array]:
    """fit's step, also traced whole into JAX's scanned epochs: ``(loss, Y, new_params, new_state, check)``.

    ``check`` is :func:`finite_check` of the loss and the new params (their
    model state included); with ``check=False`` it is the loss alone.
    """
    Y, value, grads, params = _forward_backward(model, loss, params, X, T, rng)
    params, state = _update(optimizer, params, grads, state)
    return value, Y, params, state, finite_check(value, params) if check else value


def finite_check(value: Array, params: Params) -> Array:
    """``value + sum of every leaf of params``: a 0-d array that is finite iff all of them are.

    One value to copy to the host per step. fit passes the loss and the params
    *after* the update: a NaN/inf gradient makes the updated params NaN/inf
    too, and so does an update that divides 0 by 0 (Adam with ``eps=0`` and a
    zero gradient). float16 leaves are summed in float32 so that large finite
    params do not overflow the sum.
    """
    xp = namespace(value)
    check = value
    for p in tree_leaves(params):
        check = check + (xp.sum(p, dtype=xp.float32) if dtype_name(p.dtype) == "float16" else xp.sum(p))
    return check


def n_correct(xp: Any, Y: Array, T: Array) -> Array | None:
    """Correct predictions (argmax over Y's last axis) for integer labels T; None for other targets.

    Y ``(N, C)`` with T ``(N,)``, or Y ``(N, ..., C)`` with T ``(N, ...)``
    (a sequence model's logits: every token counts).
    """
    if not xp.isdtype(T.dtype, "integral") or Y.ndim != T.ndim + 1:
        return None
    return xp.sum(xp.astype(xp.argmax(Y, axis=-1) == T, xp.int32))


class TrainStep:
    """``step(params, state, X, T) -> (params, state, loss)``; see :func:`compile_step`."""

    def __init__(self, model: Layer, loss: Callable[..., Any], optimizer: Any, compile: bool | None) -> None:
        if compile not in (None, True, False):
            raise TypeError(f"compile must be None, True or False, got {compile!r}.")
        self.model, self.loss, self.optimizer, self.compile = model, loss, optimizer, compile
        self._compiled: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"TrainStep({self.model!r}, {getattr(self.loss, '__name__', self.loss)!r}, {self.optimizer!r})"

    def compiler(self, X: Array) -> str | None:
        """``"jax.jit"``, ``"torch.compile"`` or None (the portable code) for inputs like ``X``.

        The backend's adapter says which compiler its library has and whether
        ``compile=None`` uses it (JAX); a model that draws host random numbers
        is never compiled.
        """
        if self.compile is False or (type(X) is np.ndarray and not self.compile):
            return None
        ad = adapter_of(X)
        name = None if ad is None else ad.compiler
        if name is None or not (self.compile or ad.jit_by_default):  # type: ignore[union-attr]
            if self.compile:
                raise ValueError(
                    f"compile_step: compile=True needs JAX or torch arrays, got {type(X).__name__}. "
                    "Use compile=None (portable everywhere, jit on JAX) or the 'jax' or 'torch' backend."
                )
            return None
        if uses_host_rng(self.model):
            if self.compile:
                raise ValueError(
                    f"compile_step: {self.model!r} draws host random numbers (e.g. Dropout), which "
                    f"{name} would freeze at trace time. Use compile=False (or None) for such models."
                )
            return None
        return name

    def uses_jit(self, X: Array) -> bool:
        """True when this step runs through ``jax.jit`` for inputs like ``X``."""
        return self.compiler(X) == "jax.jit"

    def _fn(self, X: Array, compiler: str, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        key = f"{compiler}:{name}"
        if key not in self._compiled:
            self._compiled[key] = adapter_of(X).compile(fn)  # type: ignore[union-attr]
        return self._compiled[key]  # type: ignore[no-any-return]

    def fit_step(
        self, params: Params, state: Any, X: Array, T: Array, rng: Seed = None, check: bool = True
    ) -> tuple[Array, Array, Params, Any, Array]:
        """fit's step: ``(loss, Y, new_params, new_state, check)``, compiled as one call when compiling.

        ``check`` is :func:`finite_check` of the loss and the new params; the
        inputs are untouched, so when it is not finite the caller still holds the
        last finite params. ``check=False`` (the portable code only; a compiled
        step always checks) returns the loss itself as ``check``: the caller
        checks the params some other way (fit's loop: see ``_loop``).
        """
        compiler = self.compiler(X)
        if compiler:
            return self._fn(X, compiler, "fit_step", self._fit_step)(params, state, X, T)  # type: ignore[no-any-return]
        return self._fit_step(params, state, X, T, rng, check)

    def _fit_step(
        self, params: Params, state: Any, X: Array, T: Array, rng: Seed = None, check: bool = True
    ) -> tuple[Array, Array, Params, Any, Array]:
        return fit_step(self.model, self.loss, self.optimizer, params, state, X, T, rng, check)

    def __call__(self, params: Params, state: Any, X: Array, T: Array, rng: Seed = None) -> tuple[Params, Any, Array]:
        """One step on batch ``(X, T)``. Returns new params, new state and the loss *before* the update."""
        compiler = self.compiler(X)
        if compiler:
            return self._fn(X, compiler, "step", self._step)(params, state, X, T)  # type: ignore[no-any-return]
        return self._step(params, state, X, T, rng)

    def _step(self, params: Params, state: Any, X: Array, T: Array, rng: Seed = None) -> tuple[Params, Any, Array]:
        _, value, grads, params = _forward_backward(self.model, self.loss, params, X, T, rng)
        params, state = _update(self.optimizer, params, grads, state)
        return params, state, value


def compile_step(
    model: Layer, loss: Callable[..., Any], optimizer: Any, *, compile: bool | None = None
) -> TrainStep:
    """A training step for ``model``, ``loss`` and ``optimizer``.

    Args:
        compile: ``None`` (default) jits the step with ``jax.jit`` on JAX arrays
            (unless the model has dropout) and runs the portable code elsewhere;
            ``True`` also runs ``torch.compile`` on torch tensors (its first
            call compiles for 10-40 s; on the CPU it is rarely faster than the
            portable code for small nets) and raises on NumPy and
            array_api_strict or with dropout; ``False`` always runs the
            portable code.

    Returns:
        ``step(params, state, X, T, rng=None) -> (params, state, loss)`` with
        X ``(batch, features)``, T the targets, loss a 0-d array. For a model
        with a model state (BatchNorm) ``params`` are its ``Variables`` and
        ``state = optimizer.init(variables.params)``; the step returns the
        Variables with the updated running statistics.

    Example:
        >>> step = pnn.compile_step(model, pnn.losses.softmax_cross_entropy, opt)
        >>> for X, T in batches:
        ...     params, state, loss = step(params, state, X, T)
    """
    return TrainStep(model, loss, optimizer, compile)
