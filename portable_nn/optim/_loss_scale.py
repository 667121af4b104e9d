"""Dynamic loss scaling for float16 training: :class:`DynamicLossScale` wraps an optimizer, as
``torch.amp.GradScaler`` wraps a torch optimizer, with the same scales and the same skipped steps."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import array_api_compat
import numpy as np

from .._check import check_int, dtype_name, is_traced, real_number
from .._tree import tree_leaves, tree_map
from ..backends import namespace, widest_float_dtype
from ._base import _ByValue, public

__all__ = ["DynamicLossScale", "LossScaleState"]


@public
class LossScaleState(NamedTuple):
    """State of :class:`DynamicLossScale`, a NamedTuple of four fields.

    - ``inner``: the wrapped optimizer's state.
    - ``scale``: the loss scale, a float32 value: a Python float, or a 0-d
      float array (traced ones in a compiled loop).
    - ``growth_tracker``: finite steps in a row since the scale last changed
      (a Python int or a 0-d integer array).
    - ``skipped``: steps skipped so far, for their non-finite grads (a Python
      int or a 0-d integer array); a training loop reports skips by difference.

    ``count`` and ``lr_scale`` read the inner state's, so a training loop reads
    them as for any optimizer; change ``lr_scale`` with
    ``state._replace(inner=state.inner._replace(lr_scale=0.1))``.
    """

    inner: Any
    scale: float
    growth_tracker: int
    skipped: int

    @property
    def count(self) -> Any:  # type: ignore[override]  # shadows tuple.count, as the optimizers' states do
        """The inner optimizer's step count (steps taken; skipped steps do not count)."""
        return self.inner.count

    @property
    def lr_scale(self) -> Any:
        """The inner optimizer's learning-rate scale."""
        return self.inner.lr_scale


@public
class DynamicLossScale(_ByValue):
    """An optimizer that takes the grads of a scaled loss, unscales them, and skips non-finite steps.

    Train on ``loss * state.scale`` (float16 grads of small losses underflow
    without it) and pass those grads to :meth:`step`. It follows
    ``torch.amp.GradScaler`` exactly: the grads are multiplied by
    ``1 / scale`` (the reciprocal computed in float64, rounded to float32)
    and checked to be finite as they come (torch checks the scaled grads too).
    Finite: the wrapped optimizer steps on the unscaled grads (its
    ``clip_norm``/``clip_value`` clip those), and after ``growth_interval``
    finite steps in a row the scale is multiplied by ``growth_factor`` (kept
    as it was where that overflows float32). Not finite: params and the
    inner state (its ``count`` too) stay as they were, the scale is
    multiplied by ``backoff_factor``, and ``skipped`` counts the step. The
    scale is a float32 value; each update is computed in float64 and rounded
    to float32, as torch does (on a device without float64, in float32: the
    same for factors that float32 holds exactly, such as the defaults).

    With Python numbers in the state and grads that are not traced, the
    choice is a Python branch; inside ``jax.jit``, ``jax.lax.scan`` or
    ``torch.compile`` (or with 0-d arrays in the state) nothing is branched
    on: both outcomes are computed and chosen leaf by leaf with ``where``,
    with the same results.

    Args:
        optimizer: the optimizer to wrap: ``init``/``step`` (and
            ``learning_rate``, where it has one), e.g. :class:`SGD` or :class:`Adam`.
        init_scale: the first scale, > 0 and finite in float32.
        growth_factor: > 1.
        backoff_factor: in (0, 1).
        growth_interval: finite steps in a row before the scale grows, >= 1.

    Raises:
        TypeError: ``optimizer`` is not an optimizer instance (``init``, ``step``, ``learning_rate``) or is
            already a DynamicLossScale; a setting that is not a number.
        ValueError: a setting out of its range.

    The guide's "Mixed precision" page (``docs/guide/mixed-precision.md``) has a complete training loop.

    >>> import numpy as np, portable_nn as pnn
    >>> opt = pnn.optim.DynamicLossScale(pnn.optim.SGD(0.1), init_scale=1024.0)
    >>> params = {"W": np.ones(2, dtype="float32")}
    >>> state = opt.init(params)                                    # a LossScaleState
    >>> params, state = opt.step(params, {"W": np.array([np.inf, 1.0], dtype="float32")}, state)
    >>> params["W"].tolist(), state.scale, state.skipped           # skipped: params kept, scale halved
    ([1.0, 1.0], 512.0, 1)
    >>> params, state = opt.step(params, {"W": np.array([1024.0, 2048.0], dtype="float32")}, state)
    >>> params["W"].tolist() == [np.float32(1 - 0.1 * 2), np.float32(1 - 0.1 * 4)]   # grads / 512
    True
    """

    def __init__(
        self, optimizer: Any, *, init_scale: float = 2.0**16, growth_factor: float = 2.0,
        backoff_factor: float = 0.5, growth_interval: int = 2000,
    ) -> None:
        name = "DynamicLossScale"
        if isinstance(optimizer, DynamicLossScale):
            raise TypeError(f"{name}: the optimizer is already a DynamicLossScale; wrap the optimizer inside it once.")
        missing = [m for m in ("init", "step") if not callable(getattr(optimizer, m, None))]
        if missing or isinstance(optimizer, type):
            raise TypeError(
                f"{name}: optimizer must be an optimizer instance with init(params) and step(params, grads, "
                f"state) methods, e.g. pnn.optim.Adam(1e-3); got {optimizer!r}."
            )
        self.optimizer = optimizer
        self.init_scale = real_number(name, "init_scale", init_scale, lo=0.0, lo_open=True)
        if not 0.0 < _f32(self.init_scale) < math.inf:
            raise ValueError(
                f"{name}: init_scale={init_scale!r} is 0 or infinite in float32 (the scale's dtype); "
                "use a value between about 1e-38 and 3e38, e.g. 2.0**16."
            )
        self.growth_factor = real_number(name, "growth_factor", growth_factor, lo=1.0, lo_open=True)
        self.backoff_factor = real_number(name, "backoff_factor", backoff_factor, lo=0.0, hi=1.0, lo_open=True,
                                          hi_open=True)
        self.growth_interval = check_int(name, "growth_interval", growth_interval, 1)

    def __repr__(self) -> str:
        return (
            f"DynamicLossScale({self.optimizer!r}, init_scale={self.init_scale}, growth_factor={self.growth_factor}, "
            f"backoff_factor={self.backoff_factor}, growth_interval={self.growth_interval})"
        )

    def init(self, params: Any) -> LossScaleState:
        """The inner optimizer's state, the scale ``init_scale`` (rounded to float32), no steps counted."""
        return LossScaleState(self.optimizer.init(params), _f32(self.init_scale), 0, 0)

    @property
    def learning_rate(self) -> Callable[[LossScaleState], float]:
        """``opt.learning_rate(state)``: the learning rate of the next step that is not skipped (the inner
        optimizer's). Absent, as on the wrapped optimizer, when that one has none: ``hasattr`` is False
        (``fit`` then records no ``"lr"``)."""
        if not callable(getattr(self.optimizer, "learning_rate", None)):
            raise AttributeError(f"the wrapped {type(self.optimizer).__name__} has no learning_rate")
        return self._learning_rate

    def _learning_rate(self, state: LossScaleState) -> float:
        return float(self.optimizer.learning_rate(self._checked("learning_rate", state).inner))

    def step(self, params: Any, grads: Any, state: LossScaleState) -> tuple[Any, LossScaleState]:
        """One step on the grads of the loss times ``state.scale``. Returns new params and state.

        Args:
            params: pytree of float arrays.
            grads: the grads of the scaled loss, mirroring params (any float
                dtype; float16/bfloat16 ones are unscaled in float32, as torch does).
            state: from :meth:`init`.
        """
        state = self._checked("step", state)
        leaves = tree_leaves(grads)
        if not leaves:  # nothing to check or unscale
            return self._finished(params, grads, state)
        xp = namespace(*leaves)
        finite = xp.all(xp.isfinite(leaves[0]))
        for g in leaves[1:]:
            finite = finite & xp.all(xp.isfinite(g))
        numbers = (state.scale, state.growth_tracker, state.skipped)
        if all(type(v) in (int, float) for v in numbers) and not is_traced(finite):
            if not bool(finite):  # the one host sync, as GradScaler.step's
                scale = _f32(state.scale * self.backoff_factor)
                return params, LossScaleState(state.inner, scale, 0, state.skipped + 1)
            return self._finished(params, _unscaled(xp, grads, _f32(1.0 / state.scale)), state)
        return self._selected(xp, finite, array_api_compat.device(leaves[0]), params, grads, state)

    def _finished(self, params: Any, unscaled: Any, state: LossScaleState) -> tuple[Any, LossScaleState]:
        """The inner step and the scale's growth bookkeeping, with Python numbers in the state."""
        params, inner = self.optimizer.step(params, unscaled, state.inner)
        scale, tracker = state.scale, state.growth_tracker + 1
        if tracker == self.growth_interval:
            grown = _f32(scale * self.growth_factor)
            scale, tracker = (grown if math.isfinite(grown) else scale), 0
        return params, LossScaleState(inner, scale, tracker, state.skipped)

    def _selected(
        self, xp: Any, finite: Any, device: Any, params: Any, grads: Any, state: LossScaleState
    ) -> tuple[Any, LossScaleState]:
        """Both outcomes computed, chosen by ``finite`` with ``where``: no branch on a (maybe traced) value."""
        scale = _array(xp, state.scale, xp.float32, device)
        inv = 1.0 / scale  # float32 division: the float64 reciprocal rounded to float32, exactly
        with warnings.catch_warnings():  # NumPy's about NaN/inf: that outcome is dropped where the grads are not finite
            warnings.simplefilter("ignore", RuntimeWarning)
            new_params, new_inner = self.optimizer.step(params, _unscaled(xp, grads, inv), state.inner)
        params = tree_map(lambda new, old: _where(xp, finite, new, old, device), new_params, params)
        inner = tree_map(lambda new, old: _where(xp, finite, new, old, device), new_inner, state.inner)
        tracker = _array(xp, state.growth_tracker, None, device)
        grown_tracker = tracker + 1
        at_interval = grown_tracker == self.growth_interval
        grown = _times(xp, scale, self.growth_factor)
        grows = at_interval & xp.isfinite(grown)
        new_scale = xp.where(finite, xp.where(grows, grown, scale), _times(xp, scale, self.backoff_factor))
        new_tracker = xp.where(finite & ~at_interval, grown_tracker, xp.zeros_like(grown_tracker))
        skipped = _array(xp, state.skipped, None, device)
        new_skipped = xp.where(finite, skipped, skipped + 1)
        return params, LossScaleState(
            inner, _like(xp, new_scale, state.scale), _like(xp, new_tracker, state.growth_tracker),
            _like(xp, new_skipped, state.skipped),
        )

    def _checked(self, method: str, state: Any) -> LossScaleState:
        where = f"DynamicLossScale.{method}"
        if not isinstance(state, LossScaleState):
            raise TypeError(
                f"{where}: state is a {type(state).__name__}, not the LossScaleState this optimizer makes "
                "(it was made by another optimizer, e.g. the wrapped one); make it with opt.init(params)."
            )
        for field in ("scale", "growth_tracker", "skipped"):
            value = getattr(state, field)
            if type(value) not in (int, float) and getattr(value, "shape", None) != ():
                raise TypeError(
                    f"{where}: state.{field} must be a Python number or a 0-d array, got {value!r}. "
                    "Make the state with opt.init(params)."
                )
        return state


def _f32(x: float) -> float:
    """``x`` rounded to float32 (inf past its range), as a Python float."""
    with np.errstate(over="ignore"):
        return float(np.float32(x))


def _unscaled(xp: Any, grads: Any, inv: Any) -> Any:
    """Each grad times ``inv`` (a float32 value): in its own dtype, float16/bfloat16 ones in float32 (torch's way)."""

    def unscale(g: Any) -> Any:
        if dtype_name(g.dtype) in ("float16", "bfloat16"):
            return xp.astype(xp.astype(g, xp.float32) * inv, g.dtype)
        return g * (inv if type(inv) is float else xp.astype(inv, g.dtype))

    return tree_map(unscale, grads)


def _array(xp: Any, value: Any, dtype: Any, device: Any) -> Any:
    """A state number as a 0-d array on ``device`` (of ``dtype``; None: as it is, or the default for a Python number)."""
    if type(value) in (int, float):
        return xp.asarray(value, dtype=dtype, device=device)
    return value if dtype is None else xp.astype(value, dtype)


def _like(xp: Any, new: Any, old: Any) -> Any:
    """``new`` in the dtype of the state field it replaces (an array field keeps its dtype)."""
    return new if type(old) in (int, float) or new.dtype == old.dtype else xp.astype(new, old.dtype)


def _times(xp: Any, scale: Any, factor: float) -> Any:
    """``float32(scale * factor)`` computed in float64 where the device has it, as torch does."""
    wide = widest_float_dtype(scale, xp=xp)
    return xp.astype(xp.astype(scale, wide) * factor, xp.float32)


def _where(xp: Any, finite: Any, new: Any, old: Any, device: Any) -> Any:
    """``new`` where the step was finite, else ``old``: one leaf of the params or of the inner state."""
    if new is old or old is None:
        return new
    if type(old) in (bool, int, float):  # a Python number of the inner state (count, lr_scale)
        old = xp.asarray(old, device=device)
    if type(new) in (bool, int, float):
        new = xp.asarray(new, device=device)
    return xp.where(finite, new, old)
