"""fit's arguments, checked once into one :class:`Settings` before any work.

Every check that can fail on an argument alone runs here, so a bad value
costs nothing: a typo, a checkpoint path that cannot be written, a callback
without ``on_epoch_end``. The data are checked next, by the data source.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from typing import Any, Protocol

from .._check import check_int, real_number
from .._rng import Seed
from ..layers.base import Params
from ..schedules import ReduceOnPlateau

__all__ = ["Callback", "Settings", "check_settings", "RESUME_SETTINGS"]

History = dict[str, list[float]]

# The settings a checkpoint's bookkeeping depends on: resuming with another value is refused.
RESUME_SETTINGS = ("batch_size", "shuffle", "seed", "patience", "min_delta", "reduce_lr", "precision")


class Callback(Protocol):
    """What ``fit(..., callbacks=[...])`` calls after each epoch's validation."""

    def on_epoch_end(self, epoch: int, history: History, params: Params) -> bool | None:
        """``epoch`` is 0-based; ``history`` holds every completed epoch. Return True to stop training."""


@dataclass(frozen=True)
class Settings:
    """fit's checked arguments (see :func:`~portable_nn.fit` for each)."""

    epochs: int = 10
    batch_size: int = 32
    seed: Seed = 0
    shuffle: bool | str = True
    patience: int | None = None
    min_delta: float = 0.0
    progress: bool | None = None
    on_nonfinite: str = "raise"
    compile: bool | None = None
    checkpoint: str | None = None
    checkpoint_every: int | None = None
    resume: bool = False
    callbacks: tuple[Callback, ...] = ()
    reduce_lr: ReduceOnPlateau | None = None
    accumulate: int = 1
    precision: str | None = None

    def resume_key(self) -> dict[str, Any]:
        """The settings a resumed run must share with the checkpoint (see :data:`RESUME_SETTINGS`)."""
        return {k: repr(getattr(self, k)) if k == "reduce_lr" else getattr(self, k) for k in RESUME_SETTINGS}


def check_settings(
    *, epochs: Any, batch_size: Any, seed: Any, shuffle: Any, patience: Any, min_delta: Any, progress: Any,
    on_nonfinite: Any, compile: Any, checkpoint: Any, checkpoint_every: Any, resume: Any, callbacks: Any,
    reduce_lr: Any, accumulate: Any, precision: str | None = None,
) -> Settings:
    """fit's arguments as :class:`Settings`, each checked; raises TypeError/ValueError naming the argument."""
    where = "fit"
    if on_nonfinite not in ("raise", "stop", "ignore"):
        raise ValueError(f"fit: on_nonfinite must be 'raise', 'stop' or 'ignore', got {on_nonfinite!r}.")
    if shuffle not in (True, False, "blocks") or isinstance(shuffle, int) and not isinstance(shuffle, bool):
        raise ValueError(
            f"fit: shuffle must be True (a new row order every epoch), False (the stored order) or 'blocks' "
            f"(Dask data only: blocks in a new order, rows shuffled within each block), got {shuffle!r}."
        )
    if compile not in (None, True, False):
        raise TypeError(f"fit: compile must be None, True or False, got {compile!r}.")
    if progress not in (None, True, False):
        raise TypeError(f"fit: progress must be None, True or False, got {progress!r}.")
    if resume and checkpoint is None:
        raise ValueError("fit: resume=True needs checkpoint='run.safetensors' (the file to resume from).")
    if reduce_lr is not None and not isinstance(reduce_lr, ReduceOnPlateau):
        raise TypeError(
            f"fit: reduce_lr must be a pnn.schedules.ReduceOnPlateau, got {type(reduce_lr).__name__}."
        )
    return Settings(
        epochs=check_int(where, "epochs", epochs, 0),
        batch_size=check_int(where, "batch_size", batch_size, 1),
        seed=seed,
        shuffle=shuffle,
        patience=None if patience is None else check_int(where, "patience", patience, 1),
        min_delta=real_number(where, "min_delta", min_delta, lo=0.0),
        progress=progress,
        on_nonfinite=on_nonfinite,
        compile=compile,
        checkpoint=None if checkpoint is None else writable_checkpoint(checkpoint, bool(resume)),
        checkpoint_every=None if checkpoint_every is None else check_int(
            where, "checkpoint_every", checkpoint_every, 1),
        resume=bool(resume),
        callbacks=_check_callbacks(callbacks),
        reduce_lr=reduce_lr,
        accumulate=check_int(where, "accumulate", accumulate, 1),
        precision=precision,
    )


def _check_callbacks(callbacks: Any) -> tuple[Callback, ...]:
    if callbacks is None or not isinstance(callbacks, (list, tuple)):
        raise TypeError(f"fit: callbacks must be a list of objects with on_epoch_end, got {type(callbacks).__name__}.")
    for i, cb in enumerate(callbacks):
        if not callable(getattr(cb, "on_epoch_end", None)):
            raise TypeError(
                f"fit: callbacks[{i}] ({type(cb).__name__}) has no on_epoch_end(epoch, history, params) method."
            )
    return tuple(callbacks)


def writable_checkpoint(path: Any, resume: bool) -> str:
    """``path`` as a string, once sure that a checkpoint can be written there (before any step).

    The folder must exist and take a new file: a probe file is created in it
    and removed, as the atomic save later creates its temporary file there. An
    existing file is left as it is; an existing folder of that name is refused.
    A symbolic link is checked (and later written) at its target.

    Raises:
        TypeError: not a str or path-like.
        ValueError: naming ``checkpoint``, the path and the reason.
    """
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"fit: checkpoint must be a file path (str or os.PathLike), got {type(path).__name__}.") from None
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    target = os.path.realpath(path)  # a symbolic link is written through (see pnn.save): check its target's folder
    link = f" (through a symbolic link it is {target!r})" if target != os.path.abspath(path) else ""
    folder = os.path.dirname(target) or "."
    why = None
    if os.path.isdir(path):
        why = "it is a folder; name a file in it, e.g. os.path.join(folder, 'run.safetensors')"
    elif not os.path.exists(folder):
        parent = folder
        while parent and not os.path.exists(parent):
            parent = os.path.dirname(parent)
        why = (f"its folder {folder!r} does not exist" if os.path.isdir(parent) else
               f"{parent!r} is a file, not a folder") + "; create the folder first (os.makedirs) or choose another path"
    elif not os.path.isdir(folder):
        why = f"{folder!r} is a file, not a folder; choose a path inside a folder"
    else:
        probe = os.path.join(folder, f".{os.path.basename(path)}.probe-{secrets.token_hex(4)}")
        try:
            with open(probe, "xb"):
                pass
            os.remove(probe)
        except OSError as e:
            why = f"no new file can be written in {folder!r} ({e.strerror or e}); choose a folder you can write to"
    if why is None and resume and os.path.exists(path) and not os.access(path, os.R_OK):
        why = "the file to resume from cannot be read"
    if why is not None:
        raise ValueError(f"fit: checkpoint={path!r} cannot be used{link}: {why}. Nothing was trained.")
    return path
