"""The optimizers' input checks: settings, grads against params, and the state against the params."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import array_api_compat
import numpy as np

from .._check import check_int, dtype_name, real_number
from .._tree import TreeMismatchError, tree_flatten, tree_leaves, tree_map, tree_paths
from ..backends import namespace
from ..schedules import Schedule

_STRUCTURE = "grads do not have the structure of params. Pass the grads returned by backprop for these params."


def _map(opt: str, f: Callable[..., Any], *trees: Any) -> Any:
    """tree_map (one walk, cheapest for one or two leaf operations) with the optimizer's message."""
    try:
        return tree_map(f, *trees)
    except TreeMismatchError as e:
        raise ValueError(f"{opt}.step: {_STRUCTURE} ({e})") from None


def _flatten_like(opt: str, params: Any, *trees: Any) -> tuple[Any, list[list[Any]]]:
    """Leaves of ``params`` and of each of ``trees`` (same order), checking they share its structure."""
    leaves, treedef = tree_flatten(params)
    out = [leaves]
    for tree in trees:
        other, other_def = tree_flatten(tree)
        if other_def != treedef:
            raise ValueError(f"{opt}.step: {_STRUCTURE}")
        out.append(other)
    return treedef, out


_CONTAINERS = (dict, list, tuple)


def _zip_map3(opt: str, f: Callable[..., tuple[Any, Any, Any]], params: Any, *trees: Any) -> tuple[Any, Any, Any]:
    """Three trees shaped like ``params`` from ``f(p, *leaves) -> (a, b, c)`` per leaf, in one walk.

    Raises the optimizer's ValueError when ``trees`` do not share ``params``' structure. (One walk
    instead of flattening every tree and rebuilding three: Adam's step runs this every step.)
    """
    if not isinstance(params, _CONTAINERS):
        if any(isinstance(t, _CONTAINERS) for t in trees):
            raise ValueError(f"{opt}.step: {_STRUCTURE}")
        return f(params, *trees)
    if isinstance(params, dict):
        if not all(isinstance(t, dict) and len(t) == len(params) for t in trees):
            raise ValueError(f"{opt}.step: {_STRUCTURE}")
        A, B, C = {}, {}, {}
        try:
            for k, p in params.items():
                A[k], B[k], C[k] = _zip_map3(opt, f, p, *(t[k] for t in trees))
        except KeyError:
            raise ValueError(f"{opt}.step: {_STRUCTURE}") from None
        return A, B, C
    if not all(isinstance(t, (list, tuple)) and len(t) == len(params) for t in trees):
        raise ValueError(f"{opt}.step: {_STRUCTURE}")
    outs = [_zip_map3(opt, f, *xs) for xs in zip(params, *trees, strict=True)]
    parts = ([o[0] for o in outs], [o[1] for o in outs], [o[2] for o in outs])
    if isinstance(params, list):
        return parts
    kind = type(params)
    if hasattr(params, "_fields"):
        return kind(*parts[0]), kind(*parts[1]), kind(*parts[2])
    return tuple(parts[0]), tuple(parts[1]), tuple(parts[2])


class _StateMismatch(Exception):
    """A state leaf differs from its param in array library, dtype or device (turned into a ValueError/TypeError)."""


def _matched(p: Any, s: Any) -> Any:
    """``s``, a state leaf, once checked to be of ``p``'s array type, dtype and device.

    Attribute reads only on the common path (no host sync, nothing traced):
    without this a float64 state silently promotes float32 params, and a state
    of another library fails deep inside the namespace or mixes silently.
    """
    if (
        type(s) is type(p)
        and s.dtype == p.dtype
        and (type(p) is np.ndarray or getattr(s, "device", None) == getattr(p, "device", None))
    ):
        return s
    if _mismatch(p, s) is None:  # e.g. a torch.nn.Parameter param and a plain tensor state
        return s
    raise _StateMismatch


def _mismatch(p: Any, s: Any) -> tuple[type[Exception], str] | None:
    """Why state leaf ``s`` cannot be used with param ``p`` (exception type, text), or None when it can."""
    kinds = f"{type(s).__module__}.{type(s).__name__}", f"{type(p).__module__}.{type(p).__name__}"
    if not hasattr(s, "dtype") or not hasattr(s, "shape"):
        return TypeError, f"is a {kinds[0]}, not an array like the param ({kinds[1]})"
    try:
        namespace(p, s)
    except TypeError:
        return TypeError, f"is a {kinds[0]} but the param is a {kinds[1]} (another array library)"
    if s.dtype != p.dtype:
        return TypeError, f"has dtype {dtype_name(s.dtype)} but the param has {dtype_name(p.dtype)}"
    ds, dp = array_api_compat.device(s), array_api_compat.device(p)
    if ds != dp:
        return ValueError, f"is on device {ds} but the param is on device {dp}"
    return None


def _state_error(where: str, params: Any, fields: dict[str, Any]) -> Exception:
    """The error for the first state leaf (of ``fields``: name -> tree) that does not match its param."""
    paths = list(tree_paths(params))
    for field, tree in fields.items():
        for (path, p), s in zip(paths, tree_leaves(tree), strict=False):
            found = _mismatch(p, s)
            if found is not None:
                exc, why = found
                return exc(
                    f"{where}: the optimizer state does not match the params: state.{field} at {path!r} "
                    f"{why}. The state was made for other params: make a new one with opt.init(params), or "
                    f"convert it, e.g. pnn.to_backend(state.{field}, be, dtype={dtype_name(p.dtype)!r}) "
                    "with be the params' backend."
                )
    return ValueError(f"{where}: the optimizer state does not match the params. Make a new one with opt.init(params).")


def _method(opt: str, into: str | None) -> str:
    return f"{opt}.update" if into is None else f"{opt}.step"


def _check_lr(where: str, lr: Any) -> float | Schedule:
    """``lr`` checked: a :class:`~portable_nn.schedules.Schedule`, or a finite number >= 0 (as a float)."""
    if isinstance(lr, Schedule):
        return lr
    if callable(lr):
        raise TypeError(
            f"{where}: lr must be a number or a pnn.schedules schedule, got {lr!r}. Use pnn.schedules.cosine, "
            "step_decay, ... or subclass pnn.schedules.Schedule as a frozen dataclass (optimizers compare "
            "by value, so that compiled training loops are reused)."
        )
    try:
        return real_number(where, "lr", lr, lo=0.0)
    except ValueError as e:
        raise ValueError(f"{e} Or pass a schedule, e.g. pnn.schedules.cosine(0.1, total_steps=1000).") from None


def _check_clip(where: str, name: str, value: Any) -> float | None:
    """``clip_norm`` or ``clip_value``: None (off), or a finite number > 0 (as a float)."""
    return None if value is None else real_number(where, name, value, lo=0.0, lo_open=True)


def _check_scalar(where: str, field: str, value: Any, params: Any = None) -> Any:
    """A state's ``count`` (an int >= 0) or ``lr_scale`` (a float >= 0), or a 0-d array of the params' library.

    Python numbers are checked (NumPy scalars become them); arrays are not read
    (they may be traced), only checked to be 0-d and, given ``params``, of the params' library.
    """
    if type(value) is (int if field == "count" else float) and 0 <= value < math.inf:
        return value  # the common case, checked without a call
    if isinstance(value, (np.integer, np.floating)):
        value = value.item()
    if isinstance(value, (int, float)):
        if field == "count":
            return check_int(where, "state.count", value, 0)
        return real_number(where, "state.lr_scale", value, lo=0.0)
    if not hasattr(value, "dtype") or getattr(value, "shape", None) != ():
        raise TypeError(
            f"{where}: state.{field} must be a Python number or a 0-d array, got {value!r}. "
            "Make the state with opt.init(params) and change lr_scale with state._replace(lr_scale=0.5)."
        )
    leaves = [] if params is None else tree_leaves(params)
    if leaves:
        try:
            namespace(leaves[0], value)
        except TypeError:
            raise TypeError(
                f"{where}: state.{field} is a {type(value).__module__}.{type(value).__name__} but the params are "
                f"{type(leaves[0]).__module__}.{type(leaves[0]).__name__}s (another array library). Use a "
                "Python number, or a 0-d array of the params' library."
            ) from None
    return value
