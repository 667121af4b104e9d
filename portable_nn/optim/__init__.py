"""Optimizers as pure ``init``/``step`` pairs over pytrees (optax style).

``state = opt.init(params)``; ``params, state = opt.step(params, grads, state)``.
``step`` is ``update`` then an add: ``updates, state = opt.update(grads, state,
params)`` gives the change ``-lr * direction`` as new arrays, and the new params
are ``p + updates``, bit for bit ``p - lr * direction``. ``step`` adds into the
updates it just made, so it is functional (it works on immutable JAX arrays and
never writes into arrays the caller holds); :func:`fit` adds them in place into
the params it owns on NumPy, CuPy and torch (:func:`apply_updates`).

``step`` and ``update`` check each state leaf against its param as they use
it (array type, dtype, device: attribute reads, no host sync) and raise,
naming the leaf, for a state made for other params: another dtype would
silently promote the params, another library or device fail obscurely or mix.

Every optimizer takes ``lr`` as a float or as a :mod:`portable_nn.schedules`
schedule of the state's ``count`` (the steps taken). A step's learning rate
is ``schedule(count) * lr_scale`` (or ``lr * lr_scale``); ``lr_scale``, 1.0 in a
new state, is for a training loop to change between steps, e.g. on a plateau:
``state = state._replace(lr_scale=0.1)``. ``count`` and ``lr_scale`` are Python
numbers, or 0-d arrays (traced ones in a compiled loop: they are only ever
computed with, never branched on). ``opt.learning_rate(state)`` is the
learning rate of the next step, as a Python float.

Every optimizer also clips the gradients first when given ``clip_value``
(each element to ``[-v, v]``) or ``clip_norm`` (the global norm over all
leaves, torch's formula): see :func:`clip_grads`.
"""

from __future__ import annotations

from typing import Any, Generic, NamedTuple, TypeVar

from .._check import real_number
from .._tree import TreeMismatchError, tree_map
from ..backends import namespace, widest_float_dtype
from ..schedules import Schedule
from ._checks import (
    _check_clip,
    _check_lr,
    _check_scalar,
    _map,
    _matched,
    _method,
    _state_error,
    _StateMismatch,
    _zip_map3,
)
from ._clip import clip_grads

__all__ = ["SGD", "SGDState", "Adam", "AdamW", "AdamState", "apply_updates", "clip_grads"]


def _zeros_like(p: Any) -> Any:
    return namespace(p).zeros_like(p)


def _cast(like: Any, s: Any) -> Any:
    """``s``, a Python float as it is, or a 0-d array (checked by ``_check_scalar``) cast to ``like``'s dtype.

    NumPy scalars (0-d NumPy arithmetic gives them) are cast too: NumPy 2 does not treat them as weak.
    """
    return s if type(s) is float else namespace(like, s).astype(s, like.dtype)


def _scaled(u: Any, lr: Any, fresh: bool) -> Any:
    """``-lr * u`` (bit for bit ``-(lr * u)``); ``fresh``: ``u`` was made by the caller, scale it in place.

    ``lr``: a Python float, or a 0-d array (from a schedule of an array count) cast to ``u``'s dtype.
    """
    lr = _cast(u, lr)
    if not fresh:
        return u * -lr
    u *= -lr  # JAX rebinds
    return u


def _add(p: Any, u: Any, into: str | None) -> Any:
    """``p + u`` for one leaf, written where ``into`` says (see :func:`apply_updates`); None: ``u`` itself."""
    if into is None:
        return u
    if into == "new" or u.dtype != p.dtype:  # another dtype: promote as p + u would
        return p + u
    if into == "params":
        p += u
        return p
    u += p
    return u


def apply_updates(params: Any, updates: Any, *, into: str = "new") -> Any:
    """``params + updates`` leaf by leaf; with ``updates = -lr * d`` this is exactly ``p - lr * d``.

    Args:
        into: where the sums go: ``"new"`` arrays (pure), ``"updates"`` (the
            updates' arrays are overwritten: for updates nobody else holds),
            or ``"params"`` (in place into params: only for params the caller
            owns outright, as :func:`fit` does; on JAX this rebinds instead).

    Returns:
        The new params (for ``into="params"``, the same arrays, updated).
        A leaf whose update has another dtype is promoted as ``p + u`` would be.
    """
    if into not in ("new", "updates", "params"):
        raise ValueError(f"apply_updates: into must be 'new', 'updates' or 'params', got {into!r}.")
    try:
        return tree_map(lambda p, u: _add(p, u, into), params, updates)
    except TreeMismatchError as e:
        raise ValueError(f"apply_updates: updates do not have the structure of params ({e}).") from None


class _ByValue:
    """Optimizers equal (and hash) by type and hyperparameters, so compiled loops of equal ones are reused."""

    def _key(self) -> tuple[Any, ...]:
        return (type(self), *sorted(vars(self).items()))

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._key() == other._key()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._key())


_State = TypeVar("_State")


class _Optimizer(_ByValue, Generic[_State]):
    """What every optimizer shares: ``lr`` (a float or a schedule), clipping, ``step``, ``update``, ``learning_rate``."""

    lr: float | Schedule
    clip_norm: float | None
    clip_value: float | None

    def _set_common(self, lr: Any, clip_norm: Any, clip_value: Any) -> None:
        name = type(self).__name__
        self.lr = _check_lr(name, lr)
        self.clip_norm = _check_clip(name, "clip_norm", clip_norm)
        self.clip_value = _check_clip(name, "clip_value", clip_value)

    def _clip_repr(self) -> str:
        """``", clip_norm=1.0"`` etc. for the clipping options that are on (reprs without them are unchanged)."""
        on = (("clip_norm", self.clip_norm), ("clip_value", self.clip_value))
        return "".join(f", {k}={v}" for k, v in on if v is not None)

    def _clip(self, grads: Any) -> Any:
        if self.clip_norm is None and self.clip_value is None:
            return grads  # without a tree walk
        return clip_grads(grads, clip_norm=self.clip_norm, clip_value=self.clip_value)

    def step(self, params: Any, grads: Any, state: _State) -> tuple[Any, _State]:
        """One update. Returns new params and state; the inputs are not modified."""
        return self._run(grads, state, params, "updates")

    def update(self, grads: Any, state: _State, params: Any) -> tuple[Any, _State]:
        """``(updates, state)``: ``updates = -lr * direction``, new arrays shaped like params."""
        return self._run(grads, state, params, None)

    def _run(self, grads: Any, state: _State, params: Any, into: str | None) -> tuple[Any, _State]:
        raise NotImplementedError

    def _lr(self, state: Any, params: Any = None) -> tuple[Any, Any]:
        """``(lr, count)``: this step's learning rate and the state's checked step count.

        Each is a Python number, or a 0-d array where the state's count or
        lr_scale is one (traced in a compiled loop: computed with, never
        branched on). ``params``: array scalars of the state must be of their library.
        """
        where = f"{type(self).__name__}.step"
        count = _check_scalar(where, "count", state.count, params)
        lr = self.lr(count) if isinstance(self.lr, Schedule) else self.lr
        scale = _check_scalar(where, "lr_scale", state.lr_scale, params)
        if isinstance(scale, float) and scale == 1.0:
            return lr, count  # bit for bit the lr
        return lr * scale, count

    def learning_rate(self, state: _State) -> float:
        """The learning rate the next ``step`` with ``state`` will use, as a Python float (read from the device)."""
        return float(self._lr(state)[0])


class SGDState(NamedTuple):
    """State of :class:`SGD`: the momentum buffers (a pytree like params, or None), step count, lr scale."""

    velocity: Any
    count: int = 0  # type: ignore[assignment]  # shadows tuple.count
    lr_scale: float = 1.0


class SGD(_Optimizer[SGDState]):
    """Stochastic gradient descent with optional momentum, Nesterov and L2 weight decay.

    ``g = grad + weight_decay * p``; with momentum ``v = momentum * v + g`` and
    the step uses ``v`` (or ``g + momentum * v`` with Nesterov); ``p = p - lr * step``.
    ``lr``: a float or a :mod:`portable_nn.schedules` schedule; ``clip_norm``,
    ``clip_value``: clip ``grad`` first (see :func:`clip_grads`).
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


class AdamState(NamedTuple):
    """State of :class:`Adam`/:class:`AdamW`: step count, first/second moment pytrees, lr scale."""

    count: int  # type: ignore[assignment]  # optax's name; shadows tuple.count
    mu: Any
    nu: Any
    lr_scale: float = 1.0


class Adam(_Optimizer[AdamState]):
    """Adam (Kingma & Ba). ``weight_decay`` here is L2 added to the gradient.

    ``lr``: a float or a :mod:`portable_nn.schedules` schedule; ``clip_norm``,
    ``clip_value``: clip the gradient first (see :func:`clip_grads`).
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


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``p -= lr * (adam + wd * p)``."""

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


def _not_variables(optimizer: Any, params: Any) -> None:
    """Refuse a stateful model's Variables: the optimizer trains ``variables.params`` only."""
    from ..layers.base import Variables

    if type(params) is Variables:
        raise TypeError(
            f"{type(optimizer).__name__}.init: got the Variables (params, state) of a model with a state "
            "(e.g. BatchNorm); the optimizer trains the params only: use opt.init(variables.params)."
        )
