"""Pytrees without JAX: nested dicts, lists and tuples whose leaves are arrays.

Params, gradients and optimizer moments are all pytrees of the same shape, so
optimizers are written once with :func:`tree_map`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "tree_map",
    "tree_leaves",
    "tree_paths",
    "tree_flatten",
    "tree_unflatten",
    "TreeMismatchError",
]


_CONTAINERS = (dict, list, tuple)


class TreeMismatchError(ValueError):
    """Two pytrees given to :func:`tree_map` have different containers, keys or lengths."""


def tree_map(f: Callable[..., Any], tree: Any, *rest: Any) -> Any:
    """Apply ``f`` leaf-wise over one or more pytrees of the same structure.

    Dicts keep their keys, lists stay lists, tuples (and NamedTuples) stay
    tuples; empty containers map to empty containers. Leaves are anything that
    is not a dict, list or tuple (arrays of any backend, numbers, None).

    Args:
        f: called as ``f(leaf, *leaves_of_rest)`` for each leaf.
        tree: a pytree, e.g. params ``[{"W": (3, 2), "b": (2,)}, {}]``.
        rest: pytrees of the same structure (gradients, moments).

    Returns:
        A pytree of ``tree``'s structure holding ``f``'s results.

    Raises:
        ValueError: (a ``TreeMismatchError``) ``rest`` differs from ``tree`` in containers, keys or lengths.

    >>> import portable_nn as pnn
    >>> pnn.tree_map(lambda p, g: p - 0.5 * g, [{"W": 1.0}, {}], [{"W": 4.0}, {}])
    [{'W': -1.0}, {}]
    """
    if not isinstance(tree, _CONTAINERS):  # a leaf: the common case, tested first
        for r in rest:
            if isinstance(r, _CONTAINERS):
                raise TreeMismatchError("the trees differ in structure (a leaf against a container)")
        return f(tree, *rest)
    if isinstance(tree, dict):
        for r in rest:
            if not isinstance(r, dict) or len(r) != len(tree):
                raise TreeMismatchError("the trees differ in structure (dict keys)")
        try:
            if len(rest) == 1:
                other = rest[0]
                return {k: tree_map(f, v, other[k]) for k, v in tree.items()}
            return {k: tree_map(f, v, *(r[k] for r in rest)) for k, v in tree.items()}
        except KeyError as e:
            raise TreeMismatchError(f"the trees differ in structure (dict key {e})") from None
    for r in rest:  # a list or tuple
        if not isinstance(r, (list, tuple)) or len(r) != len(tree):
            raise TreeMismatchError("the trees differ in structure (list lengths)")
    mapped = [tree_map(f, *xs) for xs in zip(tree, *rest, strict=True)]
    if isinstance(tree, list):
        return mapped
    return type(tree)(*mapped) if hasattr(tree, "_fields") else tuple(mapped)


def tree_flatten(tree: Any) -> tuple[list[Any], Any]:
    """``(leaves, treedef)``: leaves in :func:`tree_leaves` order; equal treedefs mean equal structure."""
    leaves: list[Any] = []
    return leaves, _flatten(tree, leaves)


def _flatten(tree: Any, leaves: list[Any]) -> Any:
    if not isinstance(tree, _CONTAINERS):
        leaves.append(tree)
        return None
    if isinstance(tree, dict):
        keys = sorted(tree)
        return ("dict", tuple(keys), tuple([_flatten(tree[k], leaves) for k in keys]))
    kind = "list" if isinstance(tree, list) else type(tree)
    return (kind, len(tree), tuple([_flatten(t, leaves) for t in tree]))


def tree_unflatten(treedef: Any, leaves: list[Any]) -> Any:
    """Rebuild a tree of the structure ``treedef`` (from :func:`tree_flatten`) from ``leaves``."""
    return _unflatten(treedef, iter(leaves))


def _unflatten(treedef: Any, leaves: Any) -> Any:
    if treedef is None:
        return next(leaves)
    kind, keys, children = treedef
    if kind == "dict":
        return {k: _unflatten(c, leaves) for k, c in zip(keys, children, strict=True)}
    items = [_unflatten(c, leaves) for c in children]
    if kind == "list":
        return items
    return kind(*items) if hasattr(kind, "_fields") else kind(items)


def tree_leaves(tree: Any) -> list[Any]:
    """The leaves of ``tree`` in a fixed order (dict keys sorted, as in JAX), as a list.

    >>> import portable_nn as pnn
    >>> pnn.tree_leaves([{"W": 1, "b": 2}, {}, {"W": 3}])
    [1, 2, 3]
    """
    leaves: list[Any] = []
    _flatten(tree, leaves)
    return leaves


def tree_paths(tree: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yield ``(path, leaf)`` pairs in :func:`tree_leaves` order; paths are dotted, e.g. ``"0.W"``.

    >>> import portable_nn as pnn
    >>> list(pnn.tree_paths([{"W": 1, "b": 2}, {}, {"W": 3}]))
    [('0.W', 1), ('0.b', 2), ('2.W', 3)]
    """
    if isinstance(tree, dict):
        items: Any = sorted(tree.items())  # sorted like JAX's pytrees, so jitted outputs agree
    elif isinstance(tree, (list, tuple)):
        items = enumerate(tree)
    else:
        yield prefix, tree
        return
    for k, sub in items:
        yield from tree_paths(sub, f"{prefix}.{k}" if prefix else str(k))
