"""Learning-rate schedules: the learning rate as a pure function of the step count.

Give one to an optimizer as its ``lr``::

    opt = pnn.optim.AdamW(lr=pnn.schedules.cosine(3e-3, total_steps=epochs * steps_per_epoch, warmup=100))

An optimizer's step number ``t`` (counting from 0, kept in its state's
``count``) uses ``schedule(t)``: the value ``torch.optim.lr_scheduler`` gives
after ``t`` calls of ``scheduler.step()`` (one per optimizer step), and what
optax's schedules give at count ``t``.

``schedule(step)`` takes a Python int, and then computes a Python float with
``math``, or a 0-d integer array, and then computes a 0-d float array of the
same library and device with array operations (in float64 where the device
has it). That includes a JAX tracer inside ``jax.jit`` or ``jax.lax.scan``, so
a compiled training loop traces the schedule instead of freezing its value at
trace time.

Each schedule is a frozen dataclass: it compares and hashes by its settings,
so optimizers holding equal schedules are equal and JAX's compiled loop,
which takes the optimizer as a static argument, is reused. To write your own,
subclass :class:`Schedule` as a frozen dataclass and define ``_host`` and
``_array``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, overload

import numpy as np

from ._check import check_int, real_number
from .backends import namespace, widest_float_dtype

__all__ = ["ReduceOnPlateau", "Schedule", "constant", "cosine", "exponential", "linear_warmup", "step_decay"]


def _set(obj: Any, name: str, value: Any) -> None:
    """Store a checked (normalized) setting on a frozen dataclass."""
    object.__setattr__(obj, name, value)


@dataclass(frozen=True)
class Schedule:
    """Base of the schedules: ``schedule(step) -> lr``, pure, comparing and hashing by its settings.

    Subclasses are frozen dataclasses that check their settings in
    ``__post_init__`` and define ``_host(step: int) -> float`` and
    ``_array(xp, step, dtype) -> array`` (``step`` a 0-d integer array, the
    result a 0-d array of ``dtype``), the same formula in both.
    """

    @overload
    def __call__(self, step: int) -> float: ...

    @overload
    def __call__(self, step: Any) -> Any: ...

    def __call__(self, step: Any) -> Any:
        """The learning rate of step ``step`` (counting from 0).

        Args:
            step: a Python (or NumPy) int >= 0, or a 0-d integer array of any
                backend, including a traced one inside ``jax.jit``.

        Returns:
            A Python float for an int; for an array, a 0-d float array of its
            library and device (float64 where the device has it).

        Raises:
            TypeError: ``step`` is neither an int nor an integer array.
            ValueError: a negative int, or an array that is not 0-d.
        """
        name = type(self).__name__
        if isinstance(step, (int, np.integer)) and not isinstance(step, (bool, np.bool_)):
            return self._host(check_int(name, "step", step, 0))
        if not hasattr(step, "dtype") or not hasattr(step, "shape"):
            raise TypeError(
                f"{name}: step must be an int or a 0-d integer array, got {type(step).__name__}. "
                "Pass the optimizer state's count."
            )
        xp = namespace(step)
        if not xp.isdtype(step.dtype, "integral"):
            raise TypeError(
                f"{name}: step must be an integer count, got an array of dtype {step.dtype}. "
                "Pass the optimizer state's count, or cast it, e.g. xp.astype(step, xp.int64)."
            )
        if step.ndim != 0:
            raise ValueError(f"{name}: step must be a 0-d array (one count), got shape {tuple(step.shape)}.")
        return self._array(xp, step, widest_float_dtype(step, xp=xp))

    def _host(self, step: int) -> float:
        raise NotImplementedError

    def _array(self, xp: Any, step: Any, dtype: Any) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class constant(Schedule):
    """``lr`` at every step (the same as passing the float; useful where a schedule is expected).

    ``schedule(step)`` takes an int (and returns a Python float) or a 0-d
    integer array (and returns a 0-d float array of its library and device).

    Raises:
        ValueError: a setting out of its range (named in the message).
        TypeError: a setting of the wrong type (a bool or string for a number).

    >>> import portable_nn as pnn
    >>> pnn.schedules.constant(0.1)(1000)
    0.1
    """

    lr: float

    def __post_init__(self) -> None:
        _set(self, "lr", real_number("constant", "lr", self.lr, lo=0.0))

    def _host(self, step: int) -> float:
        return self.lr

    def _array(self, xp: Any, step: Any, dtype: Any) -> Any:
        return xp.full_like(step, self.lr, dtype=dtype)


@dataclass(frozen=True)
class step_decay(Schedule):
    """``lr * factor ** (step // every)``: ``lr`` multiplied by ``factor`` every ``every`` steps.

    ``torch.optim.lr_scheduler.StepLR(opt, step_size=every, gamma=factor)``.
    ``lr`` >= 0, ``every`` >= 1, ``factor`` in (0, 1].

    Raises:
        ValueError: a setting out of its range (named in the message).
        TypeError: a setting of the wrong type (a bool or string for a number).

    >>> import portable_nn as pnn
    >>> [pnn.schedules.step_decay(1.0, every=2, factor=0.5)(t) for t in range(5)]
    [1.0, 1.0, 0.5, 0.5, 0.25]
    """

    lr: float
    every: int
    factor: float

    def __post_init__(self) -> None:
        _set(self, "lr", real_number("step_decay", "lr", self.lr, lo=0.0))
        _set(self, "every", check_int("step_decay", "every", self.every, 1))
        _set(self, "factor", real_number("step_decay", "factor", self.factor, lo=0.0, hi=1.0, lo_open=True))

    def _host(self, step: int) -> float:
        return self.lr * self.factor ** (step // self.every)

    def _array(self, xp: Any, step: Any, dtype: Any) -> Any:
        return self.lr * self.factor ** xp.astype(step // self.every, dtype)


@dataclass(frozen=True)
class exponential(Schedule):
    """``lr * rate ** (step / every)``; with ``staircase=True``, ``lr * rate ** (step // every)``.

    ``torch.optim.lr_scheduler.ExponentialLR(opt, gamma=rate)`` for ``every=1``;
    optax's ``exponential_decay(lr, every, rate, staircase=...)``. ``lr`` >= 0,
    ``rate`` in (0, 1], ``every`` >= 1.

    Raises:
        ValueError: a setting out of its range (named in the message).
        TypeError: a setting of the wrong type (a bool or string for a number).

    >>> import portable_nn as pnn
    >>> [pnn.schedules.exponential(1.0, rate=0.5)(t) for t in range(3)]
    [1.0, 0.5, 0.25]
    """

    lr: float
    rate: float
    every: int = 1
    staircase: bool = False

    def __post_init__(self) -> None:
        _set(self, "lr", real_number("exponential", "lr", self.lr, lo=0.0))
        _set(self, "rate", real_number("exponential", "rate", self.rate, lo=0.0, hi=1.0, lo_open=True))
        _set(self, "every", check_int("exponential", "every", self.every, 1))
        if not isinstance(self.staircase, (bool, np.bool_)):
            raise TypeError(f"exponential: staircase must be True or False, got {self.staircase!r}.")
        _set(self, "staircase", bool(self.staircase))

    def _host(self, step: int) -> float:
        return self.lr * self.rate ** (step // self.every if self.staircase else step / self.every)

    def _array(self, xp: Any, step: Any, dtype: Any) -> Any:
        power = xp.astype(step // self.every, dtype) if self.staircase else xp.astype(step, dtype) / self.every
        return self.lr * self.rate**power


def _check_warmup(where: str, peak: Any, warmup: Any, lo: int) -> tuple[float, int]:
    return real_number(where, "peak", peak, lo=0.0), check_int(where, "warmup", warmup, lo)


@dataclass(frozen=True)
class linear_warmup(Schedule):
    """``peak * step / warmup`` for the first ``warmup`` steps (0 at step 0), then ``peak``.

    ``torch.optim.lr_scheduler.LinearLR(opt, start_factor, end_factor=1.0, total_iters=warmup)``
    with a start factor of 0 (which torch does not allow; it needs one > 0).
    ``peak`` >= 0, ``warmup`` >= 1.

    Raises:
        ValueError: a setting out of its range (named in the message).
        TypeError: a setting of the wrong type (a bool or string for a number).

    >>> import portable_nn as pnn
    >>> [pnn.schedules.linear_warmup(1.0, warmup=4)(t) for t in range(6)]
    [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """

    peak: float
    warmup: int

    def __post_init__(self) -> None:
        peak, warmup = _check_warmup("linear_warmup", self.peak, self.warmup, 1)
        _set(self, "peak", peak)
        _set(self, "warmup", warmup)

    def _host(self, step: int) -> float:
        return self.peak * (step / self.warmup) if step < self.warmup else self.peak

    def _array(self, xp: Any, step: Any, dtype: Any) -> Any:
        return self.peak * xp.clip(xp.astype(step, dtype) / self.warmup, None, 1.0)


@dataclass(frozen=True)
class cosine(Schedule):
    """Linear warm-up from 0 to ``peak`` over ``warmup`` steps, cosine decay to ``end`` at ``total_steps``.

    Step ``t``: ``peak * t / warmup`` while ``t < warmup``; then
    ``end + (peak - end) * (1 + cos(pi * (t - warmup) / (total_steps - warmup))) / 2``
    up to ``total_steps``; ``end`` after. Without warm-up this is
    ``torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps, eta_min=end)``
    (which, unlike this, rises again after ``T_max``) and optax's
    ``warmup_cosine_decay_schedule(0, peak, warmup, total_steps, end)``.

    Raises:
        ValueError: ``peak`` < 0, ``total_steps`` < 1, ``warmup`` < 0 or >= ``total_steps``, ``end`` outside [0, peak].
        TypeError: a setting of the wrong type (a bool or string for a number).

    >>> import portable_nn as pnn
    >>> [round(pnn.schedules.cosine(1.0, total_steps=4)(t), 3) for t in range(6)]
    [1.0, 0.854, 0.5, 0.146, 0.0, 0.0]
    """

    peak: float
    total_steps: int
    warmup: int = 0
    end: float = 0.0

    def __post_init__(self) -> None:
        peak, warmup = _check_warmup("cosine", self.peak, self.warmup, 0)
        total = check_int("cosine", "total_steps", self.total_steps, 1)
        if warmup >= total:
            raise ValueError(
                f"cosine: warmup must be smaller than total_steps, got warmup={warmup}, total_steps={total}. "
                "total_steps counts the whole run's optimizer steps (epochs * batches per epoch), warm-up included."
            )
        end = real_number("cosine", "end", self.end, lo=0.0, hi=peak)
        for name, value in (("peak", peak), ("total_steps", total), ("warmup", warmup), ("end", end)):
            _set(self, name, value)

    def _host(self, step: int) -> float:
        if step < self.warmup:
            return self.peak * (step / self.warmup)
        frac = min(1.0, (step - self.warmup) / (self.total_steps - self.warmup))
        return self.end + (self.peak - self.end) * 0.5 * (1.0 + math.cos(math.pi * frac))

    def _array(self, xp: Any, step: Any, dtype: Any) -> Any:
        t = xp.astype(step, dtype)
        frac = xp.clip((t - self.warmup) / (self.total_steps - self.warmup), 0.0, 1.0)
        decay = self.end + (self.peak - self.end) * 0.5 * (1.0 + xp.cos(math.pi * frac))
        if not self.warmup:
            return decay
        return xp.where(t < self.warmup, self.peak * (t / self.warmup), decay)


_PLATEAU_RULES = ("keras", "torch")


@dataclass(frozen=True)
class ReduceOnPlateau:
    """Multiply the learning rate by ``factor`` when the monitored loss stops improving; for ``fit(reduce_lr=...)``.

    After each epoch ``fit`` compares its monitored loss (the validation loss,
    or the training loss without validation data) with the best so far. An
    epoch improves when ``loss < best - min_delta`` (a NaN never does); the
    first epoch improves on ``best = inf`` unless its loss is NaN or inf.
    Each epoch that does not improve counts as bad; an improvement resets the
    count to 0. When the count reaches the rule's limit, the optimizer state's
    ``lr_scale`` becomes ``max(lr_scale * factor, min_scale)`` and the count
    restarts from 0:

    - ``rule="keras"`` (the default): after ``patience`` bad epochs in a row,
      as Keras's ``keras.callbacks.ReduceLROnPlateau(mode="min",
      min_delta=min_delta, cooldown=0)`` does (``wait >= patience``). With
      ``patience=2`` the lr drops at the end of the 2nd bad epoch.
    - ``rule="torch"``: after ``patience + 1`` bad epochs in a row, as
      ``torch.optim.lr_scheduler.ReduceLROnPlateau(mode="min",
      threshold_mode="abs", threshold=min_delta, cooldown=0)`` does
      (``num_bad_epochs > patience``); ``patience=0`` drops it after every
      bad epoch. So ``rule="torch", patience=p`` is ``rule="keras",
      patience=p + 1``.

    Keras's rule is the default because it is what ``ReduceOnPlateau`` did
    before it had a ``rule``: a run set up earlier keeps its results.

    The scale multiplies a float lr or a schedule alike, lives in the state (so
    a checkpoint keeps it, and JAX's compiled loop does not recompile), and the
    history's ``"lr"`` shows its effect.

    Args:
        factor: in (0, 1); the scale's multiplier at each reduction (torch's
            and Keras's ``factor``).
        patience: bad epochs tolerated, >= 1 for ``"keras"`` (Keras's
            ``patience=0`` acts as 1), >= 0 for ``"torch"``; see above.
        min_delta: >= 0; how much lower than the best the loss must be to
            improve (Keras's ``min_delta``; torch's ``threshold`` with
            ``threshold_mode="abs"``). Note the libraries' defaults differ
            (Keras: 1e-4; torch: 1e-4 relative); ours is 0.
        min_scale: in [0, 1]; the floor of the scale, relative to the
            optimizer's lr. For a constant ``lr`` it is torch's and Keras's
            ``min_lr = min_scale * lr``; under a schedule the floor moves with
            it. Unlike torch, a reduction smaller than torch's ``eps`` (1e-8
            in lr units) is not skipped, a difference of at most 1e-8 in lr;
            unlike Keras, the scale is a float64 Python float, not the float32
            of Keras's learning-rate variable.
        rule: ``"keras"`` or ``"torch"``, as above.

    Raises:
        ValueError: a setting out of its range, or an unknown ``rule``.
        TypeError: ``patience`` not an int, or ``rule`` not a string.
    """

    factor: float = 0.1
    patience: int = 10
    min_delta: float = 0.0
    min_scale: float = 0.0
    rule: Literal["keras", "torch"] = "keras"

    def __post_init__(self) -> None:
        if not isinstance(self.rule, str):
            raise TypeError(f"ReduceOnPlateau: rule must be 'keras' or 'torch', got {type(self.rule).__name__}.")
        if self.rule not in _PLATEAU_RULES:
            raise ValueError(
                f"ReduceOnPlateau: rule must be 'keras' (reduce after `patience` bad epochs) or 'torch' "
                f"(after `patience + 1`), got {self.rule!r}."
            )
        _set(self, "factor", real_number("ReduceOnPlateau", "factor", self.factor, lo=0.0, hi=1.0, lo_open=True,
                                         hi_open=True))
        patience = check_int("ReduceOnPlateau", "patience", self.patience, 0)
        if patience < 1 and self.rule == "keras":
            raise ValueError(
                "ReduceOnPlateau: patience must be >= 1 with rule='keras', got 0. Keras's patience=0 reduces as "
                "patience=1 does: pass patience=1, or rule='torch' with patience=0."
            )
        _set(self, "patience", patience)
        _set(self, "min_delta", real_number("ReduceOnPlateau", "min_delta", self.min_delta, lo=0.0))
        _set(self, "min_scale", real_number("ReduceOnPlateau", "min_scale", self.min_scale, lo=0.0, hi=1.0))

    def update(self, best: float, wait: int, scale: float, monitored: float) -> tuple[float, int, float]:
        """One epoch's bookkeeping: ``(best, wait, scale)`` after seeing ``monitored``.

        ``wait`` counts the bad epochs since the last improvement or reduction
        (the same meaning under both rules, so a checkpoint stores it as is).
        """
        if monitored < best - self.min_delta:
            return monitored, 0, scale
        limit = self.patience + 1 if self.rule == "torch" else self.patience
        if wait + 1 >= limit:
            return best, 0, max(scale * self.factor, self.min_scale)
        return best, wait + 1, scale
