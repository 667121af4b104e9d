"""How :func:`portable_nn.load` fits a file's tree to ``like=`` (the model's params), naming the first
param that differs; and the tree-path helpers it shares with :mod:`portable_nn.io`."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._check import dtype_name
from ._errors import CheckpointError
from ._tree import tree_paths

__all__ = ["ARCHITECTURE", "Misfit", "conform", "first_path", "join", "kind", "same_kind_of_tree", "sequence"]

ARCHITECTURE = "Was it saved from another architecture? Build the model it was saved from."


def join(prefix: str, key: str) -> str:
    """The path of child ``key`` under ``prefix``, as :func:`tree_paths` names it."""
    return f"{prefix}.{key}" if prefix else key


def sequence(kind: Any, items: list[Any]) -> Any:
    """``items`` as a ``kind``: ``list``, a NamedTuple class (given them as its fields), else a tuple."""
    if kind is list:
        return items
    return kind(*items) if hasattr(kind, "_fields") else tuple(items)


def same_kind_of_tree(path: str, tree: Any, like: Any) -> None:
    """Raise CheckpointError when one of the file and ``like`` is a stateful model's Variables and the other not."""
    from .layers.base import Variables

    what = "the Variables (params, state) of a model with a state (e.g. BatchNorm)"
    if (in_file := type(tree) is Variables) == (type(like) is Variables):
        return
    if in_file:
        raise CheckpointError(
            f"load: {path!r} holds {what}, but like= is not Variables. Pass like=model.init(...) "
            "(a stateful model's init returns Variables), or load without like= and take .params."
        )
    raise CheckpointError(
        f"load: {path!r} holds params without a model state, but like= is {what}. Was it saved from the "
        "model without its BatchNorm, or from variables.params? Load it with like=variables.params."
    )


def kind(x: Any) -> str:
    """``x`` in words: "None", "an int", "a float32[3, 4] array", "a dict", "an AdamState"..."""
    if x is None:
        return "None"
    if hasattr(x, "shape"):
        return f"a {dtype_name(x.dtype)}{list(x.shape)} array"
    name = type(x).__name__
    return f"{'an' if name[0] in 'aeiouAEIOU' else 'a'} {name}"


class Misfit(Exception):
    """The file and ``like`` differ at a param: ``(name, problem, hint)``; load raises a CheckpointError."""


def conform(got: Any, want: Any, name: str, cast: str | None) -> Any:
    """``got`` (the file's tree at ``name``, host arrays) with ``want``'s (like's) container types.
    Raises _Misfit at the first difference in structure, shape, kind of leaf or dtype (after ``cast``)."""
    if isinstance(want, (dict, list, tuple)):
        if not isinstance(got, (dict, list, tuple)) or isinstance(got, dict) != isinstance(want, dict):
            raise Misfit(name, f"is {kind(got)} in the file but {kind(want)} in the model", ARCHITECTURE)
        g: dict[Any, Any] = got if isinstance(got, dict) else dict(enumerate(got))
        w: dict[Any, Any] = want if isinstance(want, dict) else dict(enumerate(want))
        for k in [k for k in w if k not in g] + [k for k in g if k not in w]:
            sub = join(name, str(k))
            if k in w:
                raise Misfit(first_path(w[k], sub), "is missing from the file", ARCHITECTURE)
            raise Misfit(first_path(g[k], sub), "is in the file but not in the model", ARCHITECTURE)
        out = [conform(g[k], w[k], join(name, str(k)), cast) for k in w]
        if isinstance(want, dict):
            return dict(zip(w, out, strict=True))
        return sequence(list if isinstance(want, list) else type(want), out)
    if not hasattr(want, "shape") or not isinstance(got, np.ndarray):
        if type(got) is not type(want):
            raise Misfit(name, f"is {kind(got)} in the file but {kind(want)} in the model", ARCHITECTURE)
        return got
    shape, want_shape, want_dtype = list(got.shape), list(want.shape), dtype_name(want.dtype)
    if shape != want_shape or (cast or got.dtype.name) != want_dtype:
        after = f", {cast}{shape} after dtype={cast!r}," if cast else ""
        hint = f"Pass dtype={want_dtype!r} to load to cast it." if shape == want_shape else ARCHITECTURE
        problem = f"is {got.dtype.name}{shape} in the file{after} but {want_dtype}{want_shape} in the model"
        raise Misfit(name, problem, hint)
    return got


def first_path(tree: Any, name: str) -> str:
    """The path of the first leaf of ``tree`` (at path ``name``), or ``name`` when it has none."""
    return next(iter(tree_paths(tree, name)), (name, None))[0]
