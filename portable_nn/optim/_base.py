"""What every optimizer shares: the base class (lr, clipping, ``step``/``update``, ``learning_rate``),
comparing by value, and adding updates to params (:func:`apply_updates`)."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from .._tree import TreeMismatchError, tree_map
from ..backends import namespace
from ..schedules import Schedule
from ._checks import _check_clip, _check_lr, _check_scalar
from ._clip import clip_grads

__all__ = ["apply_updates"]

PUBLIC_MODULE = "portable_nn.optim"
_Class = TypeVar("_Class", bound=type)


def public(cls: _Class) -> _Class:
    """Name ``portable_nn.optim`` as ``cls``'s module, where users import it from.

    Checkpoints record a state's class by module and name (``pnn.save``), so
    they keep loading whichever file of this package defines it; reprs and
    pickles name it there too.
    """
    cls.__module__ = PUBLIC_MODULE
    return cls


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
            owns outright, as a training loop of your own may; on JAX this rebinds instead).

    Returns:
        The new params (for ``into="params"``, the same arrays, updated).
        A leaf whose update has another dtype is promoted as ``p + u`` would be.

    Raises:
        ValueError: an unknown ``into``; trees of different structure.

    >>> import numpy as np, portable_nn as pnn
    >>> opt = pnn.optim.SGD(lr=0.5)
    >>> params = {"W": np.array([1.0, 2.0])}
    >>> updates, state = opt.update({"W": np.array([2.0, 2.0])}, opt.init(params), params)
    >>> pnn.optim.apply_updates(params, updates)
    {'W': array([0., 1.])}
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


class Optimizer(_ByValue, Generic[_State]):
    """What every optimizer shares: ``lr`` (a float or a schedule), clipping, ``step``, ``update``, ``learning_rate``.

    The base of :class:`SGD` and :class:`Adam` (not in ``__all__``). Its name is
    public because Python names it in its own argument errors, e.g.
    ``Optimizer.step() missing 2 required positional arguments``.
    """

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
        """One update: ``(new params, new state)``; the inputs are not modified.

        ``params`` and ``grads`` are pytrees of the same structure, shapes and
        dtypes; ``state`` is this optimizer's ``init(params)`` or a later state.
        """
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


def _not_variables(optimizer: Any, params: Any) -> None:
    """Refuse a stateful model's Variables: the optimizer trains ``variables.params`` only."""
    from ..layers.base import Variables

    if type(params) is Variables:
        raise TypeError(
            f"{type(optimizer).__name__}.init: got the Variables (params, state) of a model with a state "
            "(e.g. BatchNorm); the optimizer trains the params only: use opt.init(variables.params)."
        )
