"""Stochastic gradient descent: :class:`SGD` and its state :class:`SGDState`."""

from __future__ import annotations

from typing import Any, NamedTuple

from .._check import real_number
from .._tree import tree_map
from ..schedules import Schedule
from ._base import Optimizer, _add, _not_variables, _scaled, _zeros_like, public
from ._checks import _map, _matched, _method, _state_error, _StateMismatch

__all__ = ["SGD", "SGDState"]


@public
class SGDState(NamedTuple):
    """State of :class:`SGD`, a NamedTuple: ``velocity`` (momentum buffers, a pytree like params, or None
    without momentum), ``count`` (steps taken) and ``lr_scale`` (1.0: multiplies the learning rate)."""

    velocity: Any
    count: int = 0  # type: ignore[assignment]  # shadows tuple.count
    lr_scale: float = 1.0


@public
class SGD(Optimizer[SGDState]):
    """Stochastic gradient descent with optional momentum, Nesterov and L2 weight decay.

    ``g = grad + weight_decay * p``; with momentum ``v = momentum * v + g`` and
    the step uses ``v`` (or ``g + momentum * v`` with Nesterov); ``p = p - lr * step``,
    as ``torch.optim.SGD`` does.

    Args:
        lr: a float >= 0 or a :mod:`portable_nn.schedules` schedule of the step count.
        momentum: in [0, 1) (0: plain SGD, no velocity kept).
        nesterov: Nesterov momentum (needs ``momentum > 0``).
        weight_decay: L2 added to the gradient, >= 0.
        clip_norm: clip the gradients' global norm first (see :func:`clip_grads`).
        clip_value: clip each gradient element to ``[-clip_value, clip_value]`` first.

    Params and grads are pytrees of arrays of any backend; the new params keep
    their shapes and dtypes. The state is :class:`SGDState`.

    Raises:
        ValueError: ``lr`` or ``weight_decay`` negative, NaN or inf; ``momentum`` outside [0, 1); ``nesterov`` without momentum;
            ``clip_norm``/``clip_value`` not > 0. At ``step``/``update``: grads whose
            tree differs from the params', a state on another device than the params.
        TypeError: a setting that is not a real number (a bool, complex or
            string; NumPy scalars are fine). At ``step``/``update``: a state of
            another dtype or array library than the params (names the state
            field and param path; fix: ``opt.init(params)``).

    >>> import numpy as np, portable_nn as pnn
    >>> opt = pnn.optim.SGD(lr=0.1, momentum=0.9)
    >>> params = {"W": np.array([1.0, 2.0])}
    >>> state = opt.init(params)                                  # SGDState(velocity, count=0, lr_scale=1.0)
    >>> params, state = opt.step(params, {"W": np.array([1.0, -1.0])}, state)
    >>> params["W"], state.count
    (array([0.9, 2.1]), 1)
    """

    def __init__(
        self, lr: float | Schedule = 0.01, *, momentum: float = 0.0, nesterov: bool = False,
        weight_decay: float = 0.0, clip_norm: float | None = None, clip_value: float | None = None,
    ) -> None:
        self._set_common(lr, clip_norm, clip_value)
        self.momentum = real_number("SGD", "momentum", momentum, lo=0.0, hi=1.0, hi_open=True)
        self.weight_decay = real_number("SGD", "weight_decay", weight_decay, lo=0.0)
        if nesterov and self.momentum == 0.0:
            raise ValueError("SGD: nesterov=True needs momentum > 0.")
        self.nesterov = bool(nesterov)

    def __repr__(self) -> str:
        return (
            f"SGD(lr={self.lr}, momentum={self.momentum}, nesterov={self.nesterov}, "
            f"weight_decay={self.weight_decay}{self._clip_repr()})"
        )

    def init(self, params: Any) -> SGDState:
        """Momentum buffers of zeros (None without momentum), count 0, lr_scale 1.0."""
        _not_variables(self, params)
        return SGDState(tree_map(_zeros_like, params) if self.momentum else None)

    def _run(self, grads: Any, state: SGDState, params: Any, into: str | None) -> tuple[Any, SGDState]:
        """The updates, or (``into="updates"``) the new params written into them: one tree walk."""
        mu, wd = self.momentum, self.weight_decay
        lr, count = self._lr(state, params)
        clipped = self._clip(grads)
        fresh = bool(wd) or clipped is not grads  # new arrays, ours to scale in place
        grads = _map("SGD", lambda p, g: g + wd * p, params, clipped) if wd else clipped
        count = count + 1
        if not mu:
            new = _map("SGD", lambda p, g: _add(p, _scaled(g, lr, fresh), into), params, grads)
            return new, SGDState(state.velocity, count, state.lr_scale)
        try:  # each velocity leaf is checked against its param before use (only new arrays are made)
            velocity = _map("SGD", lambda p, v, g: mu * _matched(p, v) + g, params, state.velocity, grads)
        except _StateMismatch:
            raise _state_error(_method("SGD", into), params, {"velocity": state.velocity}) from None
        if self.nesterov:
            new = _map("SGD", lambda p, g, v: _add(p, _scaled(g + mu * v, lr, True), into), params, grads, velocity)
        else:
            new = _map("SGD", lambda p, v: _add(p, _scaled(v, lr, False), into), params, velocity)
        return new, SGDState(velocity, count, state.lr_scale)
