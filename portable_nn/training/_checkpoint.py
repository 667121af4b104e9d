"""Resumable fit: a checkpoint holds everything a run needs to continue bit for bit.

One safetensors file (written atomically by :func:`portable_nn.save`, never
pickle) holds the params, the optimizer state, the epoch and step, both host
RNG states (shuffling and dropout), the partial epoch's loss total, the
history, the early-stopping bookkeeping, and a fingerprint of the model, loss,
optimizer, settings and data, so that resuming against anything else is
refused before the file is touched.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import array_api_compat
import numpy as np

from .._check import dtype_name
from .._errors import CheckpointError
from .._tree import tree_leaves, tree_map
from ..backends import namespace, to_numpy
from ..io import load, save
from ..layers.base import Layer, config_key

__all__ = ["Checkpointer", "RunState", "fingerprint"]

_KIND = "portable_nn.fit-checkpoint/1"


@dataclass
class RunState:
    """The last completed point of a fit call.

    Attributes:
        params, opt_state: after the last completed step.
        epoch: the epoch in progress (0-based); ``step``: its completed steps.
        total, correct: that epoch's partial loss total and correct count (device values or None).
        shuffle_state: the shuffle RNG's state at the start of ``epoch`` (its order is drawn from it).
        dropout_state: the dropout RNG's state now.
        history: the completed epochs' history.
        best_loss, since_best, best_params: early-stopping bookkeeping.
        steps_done: steps over the whole run (for ``checkpoint_every``).
        stopped: early stopping or a callback ended the run.
        plateau_best, plateau_wait: ``reduce_lr``'s bookkeeping (its scale is the state's ``lr_scale``).
        skipped_before: a loss-scaled optimizer's skipped steps before ``epoch`` (the history counts each epoch's).
    """

    params: Any
    opt_state: Any
    epoch: int = 0
    step: int = 0
    total: Any = 0.0
    correct: Any = None
    shuffle_state: Mapping[str, Any] = field(default_factory=dict)
    dropout_state: Mapping[str, Any] = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)
    best_loss: float = float("inf")
    since_best: int = 0
    best_params: Any = None
    steps_done: int = 0
    stopped: bool = False
    plateau_best: float = float("inf")
    plateau_wait: int = 0
    skipped_before: int = 0


def fingerprint(
    model: Layer, loss: Any, optimizer: Any, data: tuple[Any, Any, Any], validation: tuple[Any, Any] | None,
    settings: dict[str, Any], params: Any = None,
) -> dict[str, str]:
    """What a checkpoint must match to be resumed, part by part (so a refusal can name the part).

    Everything the saved bookkeeping depends on: the model (every layer
    attribute, stable across processes), the loss (its qualified name), the
    optimizer (its repr: its hyperparameters), the training data ``(X, Y,
    sample weights)`` and the validation data ``(X_val, Y_val)`` (each by
    shape, dtype and a hash of up to 256 rows spread over it, from up to 4 blocks of Dask data: the saved best
    loss and history were measured on them), and ``settings`` (batch size,
    shuffling, seed, patience, min_delta, reduce_lr, precision), and the dtypes of ``params``
    (before the data: float data are cast to the params' dtype, so otherwise another params dtype
    would be refused as "another X").
    """
    X, Y, W = data
    prints = {
        "model": _stable(config_key(model)),
        "loss": _without_addresses(f"{getattr(loss, '__module__', '')}.{getattr(loss, '__qualname__', repr(loss))}"),
        "optimizer": repr(optimizer),
        **({} if params is None else {"params": ", ".join(sorted({dtype_name(a.dtype) for a in tree_leaves(params)}))}),
        "X": _data_hash(X),
        "Y": _data_hash(Y),
        "sample_weight": "none" if W is None else _data_hash(W),
        "validation_data": "none" if validation is None else f"{_data_hash(validation[0])}; {_data_hash(validation[1])}",
        "settings": json.dumps(settings, sort_keys=True),
    }
    return prints


def _without_addresses(text: str) -> str:
    """``text`` less the memory addresses a repr may hold (``functools.partial(<function f at 0x7f..>)``):
    they differ between processes, so a resumed run in a new process would be refused."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", text)


def _stable(key: Any) -> str:
    """``config_key`` as text that does not change between processes (no ids, no addresses)."""
    if isinstance(key, type):
        return f"{key.__module__}.{key.__qualname__}"
    if isinstance(key, tuple):
        if len(key) == 2 and isinstance(key[0], type) and isinstance(key[1], int) and not issubclass(key[0], Layer):
            return key[0].__qualname__  # an object keyed by identity: its type is what is stable
        return "(" + ", ".join(_stable(k) for k in key) + ")"
    return repr(key)


def _spread(n: int, k: int) -> np.ndarray:
    """Up to ``k`` indices in ``[0, n)``, evenly spread, first and last included."""
    return np.unique(np.linspace(0, n - 1, num=min(n, k)).astype(np.int64)) if n else np.zeros(0, np.int64)


def _data_hash(A: Any) -> str:
    """Shape, dtype and a hash of up to 256 rows spread over ``A`` (any backend's array); of a Dask
    array, 64 rows spread over each of up to 4 of its blocks (the first, the last and two between):
    rows spread over all of it would read every block, a pass over data larger than memory."""
    if hasattr(A, "compute") and hasattr(A, "chunks"):  # a Dask array: read the sampled rows only
        sizes = [int(c) for c in A.chunks[0]]
        starts = np.cumsum([0, *sizes])
        blocks = [b for b, size in enumerate(sizes) if size]
        rows = np.concatenate([np.zeros(0, np.int64)] + [
            starts[blocks[j]] + _spread(sizes[blocks[j]], 64) for j in _spread(len(blocks), 4)
        ])
        sample, dtype = np.asarray(A[rows].compute()), np.dtype(A.dtype).name
    else:
        host = to_numpy(A)
        sample, dtype = host[_spread(int(A.shape[0]), 256)], host.dtype.name
    digest = hashlib.sha256(np.ascontiguousarray(sample).tobytes()).hexdigest()[:16]
    return f"{dtype}{[int(s) for s in A.shape]} sha256:{digest}"


def _rng_to_tree(state: Mapping[str, Any]) -> dict[str, Any]:
    """A numpy BitGenerator state (128-bit ints) as arrays and small ints, for safetensors."""
    inner = state["state"]
    return {
        "bit_generator": np.frombuffer(state["bit_generator"].encode(), dtype=np.uint8).copy(),
        "state": np.frombuffer(int(inner["state"]).to_bytes(16, "little"), dtype=np.uint8).copy(),
        "inc": np.frombuffer(int(inner["inc"]).to_bytes(16, "little"), dtype=np.uint8).copy(),
        "has_uint32": int(state["has_uint32"]),
        "uinteger": int(state["uinteger"]),
    }


def _rng_from_tree(tree: dict[str, Any]) -> dict[str, Any]:
    return {
        "bit_generator": bytes(to_numpy(tree["bit_generator"])).decode(),
        "state": {
            "state": int.from_bytes(bytes(to_numpy(tree["state"])), "little"),
            "inc": int.from_bytes(bytes(to_numpy(tree["inc"])), "little"),
        },
        "has_uint32": int(tree["has_uint32"]),
        "uinteger": int(tree["uinteger"]),
    }


class Checkpointer:
    """Saves a fit's :class:`RunState` to ``path`` and reads it back for ``resume``.

    Args:
        path: the checkpoint file.
        every: save every this many steps; None: at the end of every epoch.
        prints: the run's :func:`fingerprint`.
        like: the run's params: resumed arrays go to their namespace and device.
    """

    def __init__(self, path: str | os.PathLike[str], every: int | None, prints: dict[str, str], like: Any) -> None:
        self.path = os.fspath(path)
        self.every = every
        self.prints = prints
        self.xp, self.device = _placement(like)

    def due(self, steps_done: int) -> bool:
        """A step-level save is due after ``steps_done`` steps."""
        return self.every is not None and steps_done % self.every == 0

    def save(self, run: RunState) -> None:
        """Write ``run`` atomically (the previous checkpoint stays whole until the new one replaces it)."""
        tree = {
            "kind": np.frombuffer(_KIND.encode(), dtype=np.uint8).copy(),
            "fingerprint": {k: np.frombuffer(v.encode(), dtype=np.uint8).copy() for k, v in self.prints.items()},
            "params": run.params,
            "opt_state": run.opt_state,
            "position": {"epoch": run.epoch, "step": run.step, "steps_done": run.steps_done, "stopped": run.stopped,
                         "skipped_before": run.skipped_before},
            "partial": {
                "total": float(run.total),
                "correct": None if run.correct is None else int(run.correct),
            },
            "rng": {"shuffle": _rng_to_tree(run.shuffle_state), "dropout": _rng_to_tree(run.dropout_state)},
            # the epochs before run.epoch are complete; the live history may already hold run.epoch's loss
            "history": {k: np.asarray(v[: run.epoch], dtype=np.float64) for k, v in run.history.items()},
            "early": {"best_loss": float(run.best_loss), "since_best": run.since_best, "best_params": run.best_params,
                      "plateau_best": float(run.plateau_best), "plateau_wait": run.plateau_wait},
        }
        save(self.path, tree)

    def load(self) -> RunState | None:
        """The saved run, or None when there is no file yet.

        Raises:
            CheckpointError: the file is not a fit checkpoint, or it was written for
                another model, loss, optimizer, settings or data (named); the file is left as it is.
        """
        if not os.path.exists(self.path):
            return None
        try:
            tree = load(self.path, backend="numpy")
        except CheckpointError as e:  # load's words name load and suggest pnn.save: say what fit can do
            raise CheckpointError(
                f"fit: cannot resume from checkpoint={self.path!r}: {e} Pass resume=False to start afresh (the "
                "file will be overwritten), or another checkpoint path (the file is left as it is)."
            ) from None
        if not isinstance(tree, dict) or "fingerprint" not in tree or "kind" not in tree:
            raise CheckpointError(
                f"fit: {self.path!r} is a portable_nn file but not a fit checkpoint. "
                "Pass another checkpoint path, or resume=False to start afresh (it will be overwritten)."
            )
        saved = {k: bytes(to_numpy(v)).decode() for k, v in tree["fingerprint"].items()}
        # the settings first: another precision also changes the optimizer (float16 wraps it in a loss scale)
        for part in sorted(self.prints, key=lambda part: part != "settings"):
            if part == "params" and part not in saved:  # written before the params' dtypes were recorded
                continue
            if saved.get(part) != self.prints[part]:
                if part == "settings":
                    raise CheckpointError(
                        f"fit: {self.path!r} was written with other settings: "
                        f"{_settings_diff(saved.get(part), self.prints[part])}. Resume with the same settings "
                        f"({', '.join(json.loads(self.prints[part]))}), or pass another checkpoint path "
                        "(the file is left as it is)."
                    )
                what = "params dtype" if part == "params" else part
                raise CheckpointError(
                    f"fit: {self.path!r} was written for another {what}: {_difference(saved.get(part), self.prints[part])}. "
                    "Resume with the same model, params dtype, loss, optimizer, data, validation data and settings, "
                    "or pass another checkpoint path (the file is left as it is)."
                )
        position, partial, early = tree["position"], tree["partial"], tree["early"]
        return RunState(
            params=self._place(tree["params"]),
            opt_state=self._place(tree["opt_state"]),
            epoch=int(position["epoch"]),
            step=int(position["step"]),
            total=float(partial["total"]),
            correct=partial["correct"],
            shuffle_state=_rng_from_tree(tree["rng"]["shuffle"]),
            dropout_state=_rng_from_tree(tree["rng"]["dropout"]),
            history={k: [float(x) for x in to_numpy(v)] for k, v in tree["history"].items()},
            best_loss=float(early["best_loss"]),
            since_best=int(early["since_best"]),
            best_params=self._place(early["best_params"]),
            steps_done=int(position["steps_done"]),
            stopped=bool(position["stopped"]),
            plateau_best=float(early["plateau_best"]),
            plateau_wait=int(early["plateau_wait"]),
            skipped_before=int(position.get("skipped_before", 0)),
        )

    def _place(self, tree: Any) -> Any:
        """Host arrays onto the run's namespace and device; other leaves (counts, None) as they are."""
        return tree_map(
            lambda a: xp_asarray(self.xp, a, self.device) if isinstance(a, np.ndarray) else a, tree
        )


def _difference(saved: str | None, now: str, context: int = 80) -> str:
    """``it has A, this run has B``; for long texts (a big model's description) only the part around
    the first character where they differ, so that the difference is not buried in thousands of characters."""
    if saved is None or len(saved) + len(now) <= 4 * context:
        return f"it has {saved!r}, this run has {now!r}"
    i = next((k for k, (a, b) in enumerate(zip(saved, now, strict=False)) if a != b), min(len(saved), len(now)))
    lo = max(0, i - context // 2)

    def part(text: str) -> str:
        return ("..." if lo else "") + text[lo : i + context] + ("..." if i + context < len(text) else "")

    return f"they first differ at character {i}: it has {part(saved)!r}, this run has {part(now)!r}"


def _settings_diff(saved: str | None, now: str) -> str:
    """The settings that differ, e.g. ``precision=None in the file, 'float16' in this run``."""
    try:
        old = json.loads(saved) if saved is not None else {}
    except ValueError:
        return f"{saved!r} in the file, {now!r} in this run"
    new = json.loads(now)
    missing = "(not recorded)"
    return "; ".join(
        f"{k}={old.get(k, missing)!r} in the file, {new.get(k, missing)!r} in this run"
        for k in sorted(set(old) | set(new)) if old.get(k, missing) != new.get(k, missing)
    )


def _placement(params: Any) -> tuple[Any, Any]:
    leaf = tree_leaves(params)[0]
    return namespace(leaf), array_api_compat.device(leaf)


def xp_asarray(xp: Any, a: np.ndarray, device: Any) -> Any:
    """``a`` as an array of ``xp`` on ``device`` (NumPy arrays stay as they are)."""
    return a if xp is np else xp.asarray(a, device=device)

