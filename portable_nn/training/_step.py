"""One training step, written once: forward, loss, backprop, then the optimizer.

Every training path runs these functions: ``fit``'s portable loop and JAX's
compiled ``lax.scan`` epochs (:func:`fit_step`), ``compile_step``'s callable
(:class:`TrainStep`), the scikit-learn estimators (through ``fit``'s engine)
and the Dask workers of ``fit(..., client=)`` (:func:`forward_backward`, the
first half, whose gradients the cluster sums before :func:`update`).

What varies between callers is data, not code: a :class:`StepSpec` holds the
model, the loss, the optimizer, an optional ``penalty`` (a regularizer's
loss term and gradient, e.g. scikit-learn's L2 ``alpha``) and the compute
``precision`` (mixed precision, see ``_precision``); rows may carry sample
weights ``W`` (the loss then takes ``weights=W``); an optimizer state with a
loss scale (``DynamicLossScale``) scales dY before the backward pass.

``compile_step(model, loss, optimizer)`` returns a callable
``step(params, state, X, T) -> (params, state, loss)``. The same Python code
can be traced once and compiled: by ``jax.jit`` (the default on JAX) or, with
``compile=True``, by ``torch.compile``. Compiled functions live in one cache
(:func:`compiled`), keyed by the step's configuration, so equal models,
losses and optimizers (a grid search's clones, successive fits) compile once.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np

from .._check import dtype_name
from .._rng import Seed
from .._tree import tree_leaves, tree_map
from ..backends import adapter_of, namespace
from ..layers.base import (
    Array,
    Layer,
    Params,
    Variables,
    apply_model,
    config_key,
    run_backprop,
    trainable,
    uses_host_rng,
)
from ._precision import check_precision, compute_dtype, loss_scale_of, master_params, to_dtype

__all__ = [
    "StepSpec",
    "TrainStep",
    "compile_step",
    "compiled",
    "finite_check",
    "fit_step",
    "forward_backward",
    "grads_and_loss",
    "n_correct",
    "update",
]

Penalty = Callable[[Params, Params, Any], tuple[Any, Params]]
"""``penalty(params, grads, batch_weight) -> (loss term, grads)``: a regularizer added to each step;
``batch_weight`` is the batch's rows, or the sum of its sample weights."""


@dataclass(frozen=True, eq=False)
class StepSpec:
    """What a training step computes: ``model`` under ``loss``, trained by ``optimizer`` (plus ``penalty``).

    Equal (and hashed) by its configuration (:meth:`key`): the model's type and settings, the loss and
    penalty, the optimizer's hyperparameters. So a compiled function keyed by a spec (JAX's scanned
    epochs take it as a static argument) serves the next fit with an equal model, also a new object
    of the same configuration (the scikit-learn estimators build one per fit, and a grid search's
    clones each their own).
    """

    model: Layer
    loss: Callable[..., Any]
    optimizer: Any
    penalty: Penalty | None = None
    precision: str | None = None

    def key(self) -> tuple[Any, ...]:
        """The configuration, for compile caches: a layer setting changed in place gives another key."""
        return (config_key(self.model), self.loss, self.optimizer, self.penalty, self.precision)

    def __eq__(self, other: object) -> bool:
        return type(other) is StepSpec and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())


def forward_backward(
    spec: StepSpec, params: Params, X: Array, T: Array, rng: Seed = None, W: Array | None = None,
    scale: Any = None,
) -> tuple[Array, Array, Params, Params]:
    """Forward, loss and backprop on one batch: ``(Y, loss value, grads, params with the new model state)``.

    Args:
        params: the model's params or its :class:`Variables` (the state comes back updated).
        X: the batch's inputs; T: its targets; W: its sample weights ``(batch,)`` or None.
        rng: dropout's host RNG.
        scale: a loss scale (``DynamicLossScale``'s): the grads are those of ``scale * loss``.

    The grads mirror the trainable params, in their (master) dtype; the
    input's dX is not computed where the model can skip it. A ``penalty`` adds
    its term to the value and its gradient to the grads. With ``spec.precision``
    the forward and backward passes run in that dtype (see ``_precision``).
    """
    run, Xr = params, X
    if spec.precision is not None:
        low = compute_dtype(X, spec.precision)
        run = to_dtype(trainable(params), low)
        run = Variables(run, params.state) if type(params) is Variables else run
        Xr = to_dtype(X, low)
    Y, new, backprop = apply_model(spec.model, run, Xr, train=True, rng=rng)
    if spec.precision is not None:
        master = tree_leaves(trainable(params))[0].dtype
        new = master_params(params, new)
        Y = namespace(Y).astype(Y, master)  # the loss and its gradient in the master dtype
    value, dY = spec.loss(Y, T) if W is None else spec.loss(Y, T, weights=W)
    # the scaled backward pass may overflow to inf/NaN: the loss scale finds that and skips the step, so NumPy's
    # overflow/invalid warnings there are noise (torch's GradScaler is silent too); the forward pass still warns
    with _quiet_overflow(scale is not None):
        if scale is not None:
            dY = dY * namespace(dY).astype(scale, dY.dtype) if hasattr(scale, "dtype") else dY * scale
        if spec.precision is not None:
            dY = namespace(dY).astype(dY, low)
        _, grads = run_backprop(backprop, dY, need_dX=False)
        if spec.precision is not None:
            grads = to_dtype(grads, master)
    if spec.penalty is not None:
        weight = X.shape[0] if W is None else namespace(W).sum(W)
        if scale is None:
            extra, grads = spec.penalty(trainable(params), grads, weight)
        else:  # the penalty's gradient joins the unscaled grads
            extra, unscaled = spec.penalty(trainable(params), tree_map(lambda g: g / scale, grads), weight)
            grads = tree_map(lambda g: g * scale, unscaled)
        value = value + extra
    return Y, value, grads, new


def update(optimizer: Any, params: Params, grads: Params, state: Any) -> tuple[Params, Any]:
    """The optimizer's step on the trainable params; a model state (``Variables.state``) rides along."""
    if type(params) is Variables:
        new, state = optimizer.step(params.params, grads, state)
        return Variables(new, params.state), state
    return optimizer.step(params, grads, state)  # type: ignore[no-any-return]


def fit_step(
    spec: StepSpec, params: Params, state: Any, X: Array, T: Array, rng: Seed = None, check: bool = True,
    W: Array | None = None,
) -> tuple[Array, Array, Params, Any, Array]:
    """One whole step: ``(loss, Y, new_params, new_state, check)``; traced whole into JAX's scanned epochs.

    ``check`` is :func:`finite_check` of the loss and the new params (their
    model state included); with ``check=False`` it is the loss alone. The
    inputs are untouched, so a caller that finds the check not finite still
    holds the last finite params.
    """
    scale = loss_scale_of(state)
    Y, value, grads, params = forward_backward(spec, params, X, T, rng, W, scale)
    params, state = update(spec.optimizer, params, grads, state)
    if scale is not None:  # a step with inf/NaN grads is skipped, not an error: only the params can say
        return value, Y, params, state, finite_check(0.0, params, like=value) if check else namespace(value).zeros(())
    return value, Y, params, state, finite_check(value, params) if check else value


def grads_and_loss(
    model: Layer, loss: Callable[..., Any], params: Params, X: Array, T: Array, rng: Seed = None
) -> tuple[Array, Array, Params]:
    """Forward, loss and backprop on one batch: ``(loss_value, Y, grads)``, grads shaped like the
    trainable params (``variables.params`` for a stateful model)."""
    Y, value, grads, _ = forward_backward(StepSpec(model, loss, None), params, X, T, rng)
    return value, Y, grads


def finite_check(value: Any, params: Params, like: Array | None = None) -> Array:
    """``value + sum of every leaf of params``: a 0-d array that is finite iff all of them are.

    ``value`` may be a Python number when ``like`` (an array of the namespace) is given.

    One value to copy to the host per step. fit passes the loss and the params
    *after* the update: a NaN/inf gradient makes the updated params NaN/inf
    too, and so does an update that divides 0 by 0 (Adam with ``eps=0`` and a
    zero gradient). float16 leaves are summed in float32 so that large finite
    params do not overflow the sum.
    """
    xp = namespace(value if like is None else like)
    check = value
    for p in tree_leaves(params):
        check = check + (xp.sum(p, dtype=xp.float32) if dtype_name(p.dtype) == "float16" else xp.sum(p))
    return check


@contextmanager
def _quiet_overflow(quiet: bool) -> Any:
    """Within it, when ``quiet``: no "overflow encountered" / "invalid value encountered" RuntimeWarnings
    (NumPy's, for a scaled backward pass whose inf/NaN the loss scale handles); nothing else is hidden."""
    if not quiet:
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(overflow|invalid value) encountered", category=RuntimeWarning)
        yield


def n_correct(xp: Any, Y: Array, T: Array) -> Array | None:
    """Correct predictions (argmax over Y's last axis) for integer labels T; None for other targets.

    Y ``(N, C)`` with T ``(N,)``, or Y ``(N, ..., C)`` with T ``(N, ...)``
    (a sequence model's logits: every token counts).
    """
    if not xp.isdtype(T.dtype, "integral") or Y.ndim != T.ndim + 1:
        return None
    return xp.sum(xp.astype(xp.argmax(Y, axis=-1) == T, xp.int32))


# The one compile cache: (compiler, what, configuration) -> compiled function.
_COMPILED: dict[Any, Callable[..., Any]] = {}


def compiled(X: Array, what: str, key: Any, make: Callable[[], Callable[..., Any]]) -> Callable[..., Any]:
    """``make()`` compiled by the compiler of ``X``'s library, cached under ``(what, key)``.

    ``key`` is a configuration (see :meth:`StepSpec.key`); an unhashable one
    (a user's loss or optimizer that defines ``__eq__`` without ``__hash__``)
    compiles anew each time.
    """
    ad = adapter_of(X)
    assert ad is not None and ad.compiler is not None
    try:
        fn = _COMPILED.get((ad.compiler, what, key))
    except TypeError:
        return ad.compile(make())
    if fn is None:
        fn = _COMPILED[ad.compiler, what, key] = ad.compile(make())
    return fn


class TrainStep:
    """A training step, as :func:`~portable_nn.compile_step` returns it.

    ``step(params, state, X, T, rng=None) -> (params, state, loss)``: one
    forward, backward and optimizer step on the batch ``(X, T)``; ``loss`` is
    the 0-d loss of the params before the update. The same object runs
    ``fit``'s steps, compiled (``jax.jit``, ``torch.compile``) where
    :meth:`compiler` says so.
    """

    def __init__(self, spec: StepSpec, compile: bool | None, where: str = "compile_step") -> None:
        if compile not in (None, True, False):
            raise TypeError(f"{where}: compile must be None, True or False, got {compile!r}.")
        self.spec, self.compile, self.where = spec, compile, where  # where: the public function, for errors
        self._precision_checked: set[Any] = set()  # (library, device) pairs whose params can run spec.precision

    @property
    def model(self) -> Layer:
        return self.spec.model

    @property
    def loss(self) -> Callable[..., Any]:
        return self.spec.loss

    @property
    def optimizer(self) -> Any:
        return self.spec.optimizer

    def __repr__(self) -> str:
        s = self.spec
        return f"TrainStep({s.model!r}, {getattr(s.loss, '__name__', s.loss)!r}, {s.optimizer!r})"

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
                    f"{self.where}: compile=True needs JAX or torch arrays, got {type(X).__name__}. "
                    "Use compile=None (portable everywhere, jit on JAX) or the 'jax' or 'torch' backend."
                )
            return None
        if uses_host_rng(self.spec.model):
            if self.compile:
                raise ValueError(
                    f"{self.where}: {self.spec.model!r} draws host random numbers (e.g. Dropout), which "
                    f"{name} would freeze at trace time. Use compile=False (or None) for such models."
                )
            return None
        return name

    def uses_jit(self, X: Array) -> bool:
        """True when this step runs through ``jax.jit`` for inputs like ``X``."""
        return self.compiler(X) == "jax.jit"

    def fit_step(
        self, params: Params, state: Any, X: Array, T: Array, rng: Seed = None, check: bool = True,
        W: Array | None = None,
    ) -> tuple[Array, Array, Params, Any, Array]:
        """:func:`fit_step`, compiled as one call when compiling (a compiled step always checks)."""
        if self.spec.precision is not None:
            self._check_precision(params)
        if self.compiler(X):
            spec = self.spec
            fn = compiled(X, "fit_step", spec.key(),
                          lambda: lambda p, s, x, t, w: fit_step(spec, p, s, x, t, None, True, w))
            return fn(params, state, X, T, W)  # type: ignore[no-any-return]
        return fit_step(self.spec, params, state, X, T, rng, check, W)

    def _check_precision(self, params: Params) -> None:
        """Raise as fit does (PrecisionError, TypeError) when the params cannot train in ``spec.precision``:
        checked at the first step on each library and device (compile_step has no params before it)."""
        leaves = tree_leaves(trainable(params))
        where = (type(leaves[0]), str(array_api_compat.device(leaves[0]))) if leaves else None
        if where is None or where not in self._precision_checked:
            check_precision("compile_step", self.spec.precision, params)
            self._precision_checked.add(where)

    def __call__(self, params: Params, state: Any, X: Array, T: Array, rng: Seed = None) -> tuple[Params, Any, Array]:
        """One step on batch ``(X, T)``. Returns new params, new state and the loss *before* the update."""
        value, _, params, state, _ = self.fit_step(params, state, X, T, rng, check=False)
        return params, state, value


def compile_step(
    model: Layer, loss: Callable[..., Any], optimizer: Any, *, compile: bool | None = None,
    precision: str | None = None,
) -> TrainStep:
    """A training step for ``model``, ``loss`` and ``optimizer``.

    Args:
        precision: ``None``, ``"bfloat16"`` or ``"float16"``: mixed precision, as
            in :func:`fit` (params and state stay in their dtype; forward and
            backward run in this one). A float16 step needs a loss scale: pass a
            :class:`~portable_nn.optim.DynamicLossScale` optimizer (``fit`` wraps
            it for you); its state's scale multiplies dY. A backend or device
            without the precision raises :class:`~portable_nn.PrecisionError`
            at the first call, as ``fit`` does before its first step.
        compile: ``None`` (default) jits the step with ``jax.jit`` on JAX arrays
            (unless the model has dropout) and runs the portable code elsewhere;
            ``True`` also runs ``torch.compile`` on torch tensors (its first
            call compiles for 10-40 s; on the CPU it is rarely faster than the
            portable code for small nets) and raises on NumPy and
            array_api_strict or with dropout; ``False`` always runs the
            portable code.

    Returns:
        ``step(params, state, X, T, rng=None) -> (params, state, loss)`` with
        X ``(batch, ...)``, T the targets, loss a 0-d array (the loss *before*
        the update). For a model with a model state (BatchNorm) ``params`` are
        its ``Variables`` and ``state = optimizer.init(variables.params)``; the
        step returns the Variables with the updated running statistics.

    Raises:
        TypeError: ``compile`` is not None, True or False.
        ValueError: ``precision`` is not None, ``"bfloat16"`` or ``"float16"``.

    >>> import numpy as np, portable_nn as pnn
    >>> model = pnn.Sequential(pnn.Linear(4, 8), pnn.ReLU(), pnn.Linear(8, 3))
    >>> params, opt = model.init(seed=0, backend="numpy"), pnn.optim.SGD(0.1)
    >>> state = opt.init(params)
    >>> step = pnn.compile_step(model, pnn.losses.softmax_cross_entropy, opt)
    >>> rng = np.random.default_rng(0)
    >>> for _ in range(3):
    ...     X, T = rng.standard_normal((16, 4)).astype("float32"), rng.integers(0, 3, 16)
    ...     params, state, loss = step(params, state, X, T)
    >>> state.count, loss.shape
    (3, ())
    """
    if precision not in (None, "bfloat16", "float16"):
        raise ValueError(f"compile_step: precision must be None, 'bfloat16' or 'float16', got {precision!r}.")
    return TrainStep(StepSpec(model, loss, optimizer, precision=precision), compile)
