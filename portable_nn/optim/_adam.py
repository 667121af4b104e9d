"""Adam and AdamW (decoupled weight decay), and their state :class:`AdamState`."""

from __future__ import annotations

from typing import Any, NamedTuple

from .._check import real_number
from .._tree import tree_map
from ..backends import namespace, widest_float_dtype
from ..schedules import Schedule
from ._base import Optimizer, _add, _cast, _not_variables, _scaled, _zeros_like, public
from ._checks import _matched, _method, _state_error, _StateMismatch, _zip_map3

__all__ = ["Adam", "AdamState", "AdamW"]


@public
class AdamState(NamedTuple):
    """State of :class:`Adam`/:class:`AdamW`, a NamedTuple: ``count`` (steps taken), ``mu`` and ``nu`` (first
    and second moments, pytrees like params, optax's names) and ``lr_scale`` (1.0: multiplies the learning rate)."""

    count: int  # type: ignore[assignment]  # optax's name; shadows tuple.count
    mu: Any
    nu: Any
    lr_scale: float = 1.0


@public
class Adam(Optimizer[AdamState]):
    """Adam (Kingma & Ba). ``weight_decay`` here is L2 added to the gradient.

    ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g**2``, and ``p = p - lr *
    m_hat / (sqrt(v_hat) + eps)`` with the bias-corrected moments, as
    ``torch.optim.Adam`` and optax's ``adam`` compute it.

    Args:
        lr: a float >= 0 or a :mod:`portable_nn.schedules` schedule of the step count.
        b1: decay of the first moment, in [0, 1).
        b2: decay of the second moment, in [0, 1).
        eps: added to ``sqrt(v_hat)``, >= 0.
        weight_decay: L2 added to the gradient, >= 0 (see :class:`AdamW` for decoupled decay).
        clip_norm: clip the gradients' global norm first (see :func:`clip_grads`).
        clip_value: clip each gradient element to ``[-clip_value, clip_value]`` first.

    The moments have the params' shapes and dtypes; the state is :class:`AdamState`.

    Raises:
        ValueError: ``lr`` or ``weight_decay`` negative, NaN or inf; ``b1``, ``b2`` outside [0, 1);
            ``clip_norm``/``clip_value`` not > 0. At ``step``/``update``: grads whose
            tree differs from the params', a state on another device than the params.
        TypeError: a setting that is not a real number (a bool, complex or
            string; NumPy scalars are fine). At ``step``/``update``: a state of
            another dtype or array library than the params (names the state
            field and param path; fix: ``opt.init(params)``).

    >>> import numpy as np, portable_nn as pnn
    >>> opt = pnn.optim.Adam(lr=0.1)
    >>> params = {"W": np.array([1.0, 2.0])}
    >>> params, state = opt.step(params, {"W": np.array([1.0, -1.0])}, opt.init(params))
    >>> params["W"]                                               # the first step is lr * sign(g)
    array([0.9, 2.1])
    """

    _decoupled = False

    def __init__(
        self,
        lr: float | Schedule = 1e-3,
        *,
        b1: float = 0.9,
        b2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
        clip_value: float | None = None,
    ) -> None:
        name = type(self).__name__
        self._set_common(lr, clip_norm, clip_value)
        self.b1 = real_number(name, "b1", b1, lo=0.0, hi=1.0, hi_open=True)
        self.b2 = real_number(name, "b2", b2, lo=0.0, hi=1.0, hi_open=True)
        self.eps = real_number(name, "eps", eps, lo=0.0)
        self.weight_decay = real_number(name, "weight_decay", weight_decay, lo=0.0)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(lr={self.lr}, b1={self.b1}, b2={self.b2}, eps={self.eps}, "
            f"weight_decay={self.weight_decay}{self._clip_repr()})"
        )

    def init(self, params: Any) -> AdamState:
        """Zero moments, count 0, lr_scale 1.0."""
        _not_variables(self, params)
        return AdamState(0, tree_map(_zeros_like, params), tree_map(_zeros_like, params))

    def _run(self, grads: Any, state: AdamState, params: Any, into: str | None) -> tuple[Any, AdamState]:
        """The updates, or (``into="updates"``) the new params written into them."""
        b1, b2, eps, wd, decoupled = self.b1, self.b2, self.eps, self.weight_decay, self._decoupled
        lr, count = self._lr(state, params)
        count = count + 1
        xp: Any = None
        c1: Any = None
        c2: Any = None

        def leaf(p: Any, g: Any, m: Any, v: Any) -> tuple[Any, Any, Any]:
            nonlocal xp, c1, c2
            if xp is None:  # one namespace lookup per step
                xp = namespace(p)
                t = count if isinstance(count, int) else xp.astype(count, widest_float_dtype(count, xp=xp))
                c1, c2 = 1.0 - b1**t, 1.0 - b2**t  # 0-d arrays for an array count: cast to each leaf's dtype
            if wd and not decoupled:
                g = g + wd * p
            m = b1 * _matched(p, m) + (1.0 - b1) * g
            v = b2 * _matched(p, v) + (1.0 - b2) * (g * g)
            u = (m / _cast(m, c1)) / (xp.sqrt(v / _cast(v, c2)) + eps)
            if wd and decoupled:
                u = u + wd * p
            return _add(p, _scaled(u, lr, True), into), m, v

        name = type(self).__name__
        try:  # each moment leaf is checked against its param before use (only new arrays are made)
            new, mu, nu = _zip_map3(name, leaf, params, self._clip(grads), state.mu, state.nu)
        except _StateMismatch:
            raise _state_error(_method(name, into), params, {"mu": state.mu, "nu": state.nu}) from None
        return new, AdamState(count, mu, nu, state.lr_scale)


@public
class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``p -= lr * (adam + wd * p)``.

    The arguments are :class:`Adam`'s; ``weight_decay`` (default 0.01, as in
    ``torch.optim.AdamW``) multiplies the params, not the gradient. Raises as
    :class:`Adam` does.
    """

    _decoupled = True

    def __init__(
        self,
        lr: float | Schedule = 1e-3,
        *,
        b1: float = 0.9,
        b2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        clip_norm: float | None = None,
        clip_value: float | None = None,
    ) -> None:
        super().__init__(
            lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, clip_norm=clip_norm, clip_value=clip_value
        )
