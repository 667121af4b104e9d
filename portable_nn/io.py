"""save / load pytrees (params, optimizer states, checkpoints) as safetensors, never pickle.

A file holds one tensor per leaf, named by its pytree path (``"0.W"``), and
metadata: the format tag, the library version and the tree structure. Any
file loads onto any backend and device.

The tree is JSON: a dict is an object, a list an array, an array leaf its
path. Format 2 adds, as objects with '.' in their keys (no saved dict key has
one), tuples ``{".tuple": [...]}`` (NamedTuples add ``".type": "module:qualname"``
and ``".fields"``), ``None`` as ``null`` and Python scalars ``{".int": path}``
(``.bool``, ``.float``) over 0-d int64 (bool, float64) tensors. Trees of dicts,
lists and arrays only are still written as format 1, which older versions read.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import struct
import sys
from typing import Any

import numpy as np

from ._check import dtype_name
from ._conform import Misfit, conform, join, same_kind_of_tree, sequence
from ._errors import CheckpointError, PrecisionError
from ._tree import tree_map
from ._version import __version__
from .backends import Backend, get_backend, to_numpy

__all__ = ["save", "load"]

_FORMAT = "portable_nn.params/1"  # dicts, lists and array leaves
_FORMAT_2 = "portable_nn.params/2"  # also tuples, NamedTuples, None and Python bool/int/float leaves
_MAX_HEADER = 100 * 1024 * 1024
_RESERVED = "__metadata__"  # safetensors' header entry: no tensor may have this name
_SCALARS: dict[str, tuple[type, np.dtype[Any]]] = {  # marker: the Python type, its 0-d tensor's dtype
    ".bool": (bool, np.dtype(bool)),
    ".int": (int, np.dtype(np.int64)),
    ".float": (float, np.dtype(np.float64)),
}
_DTYPES = {"bool", *(f"{kind}{bits}" for kind in ("int", "uint", "float") for bits in (8, 16, 32, 64))}


def _encode(tree: Any, name: str, tensors: dict[str, np.ndarray]) -> Any:
    """The JSON node of ``tree`` (at path ``name``); its array and scalar leaves go into ``tensors``."""
    if isinstance(tree, dict):
        for k in tree:
            if not isinstance(k, str) or not k or "." in k:
                at = f" in {name!r}" if name else ""
                msg = f"save: dict keys must be non-empty strings without '.', got {k!r}{at}. Rename it."
                raise TypeError(msg)
            if k == _RESERVED and not name:
                raise ValueError(
                    f"save: the top-level dict key {k!r} is reserved: safetensors keeps the file's header "
                    "under that name, so the file could never be loaded. Rename the key, e.g. to 'metadata'."
                )
        return {k: _encode(v, join(name, k), tensors) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        items = [_encode(v, join(name, str(i)), tensors) for i, v in enumerate(tree)]
        if isinstance(tree, list):
            return items
        node: dict[str, Any] = {".tuple": items}
        if hasattr(tree, "_fields"):
            cls = type(tree)
            node[".type"], node[".fields"] = f"{cls.__module__}:{cls.__qualname__}", list(tree._fields)
        return node
    if tree is None:
        return None
    if hasattr(tree, "shape"):
        host = np.asarray(to_numpy(tree), order="C")  # ascontiguousarray would make 0-d 1-d
        if host.dtype.name not in _DTYPES:
            raise TypeError(
                f"save: leaf {name!r} has dtype {host.dtype.name}; a checkpoint holds bool, int, uint and "
                "float16/32/64 arrays. Convert it first, e.g. with astype."
            )
        tensors[name] = host
        return name
    if isinstance(tree, (bool, int, float)):
        marker = ".bool" if isinstance(tree, bool) else ".int" if isinstance(tree, int) else ".float"
        if marker == ".int" and not -(2**63) <= tree < 2**63:
            raise ValueError(
                f"save: leaf {name!r} is the int {tree}, outside the int64 range a checkpoint stores. "
                "Save it as a float or a string elsewhere."
            )
        tensors[name] = np.asarray(tree, dtype=_SCALARS[marker][1])
        return {marker: name}
    raise TypeError(
        f"save: leaf {name!r} is a {type(tree).__name__}, not an array. Leaves may be arrays, "
        "Python bool, int or float, and None."
    )


def _is_format_1(node: Any) -> bool:
    """True for a JSON tree of dicts, lists and array leaves only, which format 1 holds."""
    if isinstance(node, str):
        return True
    if isinstance(node, list):
        return all(_is_format_1(c) for c in node)
    return isinstance(node, dict) and all("." not in k and _is_format_1(v) for k, v in node.items())


def save(path: str | os.PathLike[str], params: Any) -> None:
    """Write ``params`` (params, an optimizer state, a training checkpoint: any pytree) to a safetensors file.

    ``params`` may nest dicts (keys: non-empty strings without '.', and not
    ``"__metadata__"`` at the top level), lists, tuples and NamedTuples. Its
    leaves may be arrays of any backend and device (any shape, 0-d included;
    bool, int, uint or float16/32/64 dtypes), Python ``bool``, ``int`` (in
    the int64 range) or ``float``, and ``None``; :func:`load` gives them all
    back as they were, e.g. ``{"params": p, "opt_state": AdamState(...), "epoch": 3}``.

    The write is atomic: a temporary file in the same directory is written,
    fsynced and renamed over ``path``, so a crash never leaves a half-written
    checkpoint in place of the previous one. An overwritten file keeps its permission
    bits; a new file gets ``0o666`` less the umask. A symbolic link is followed:
    its target is written (in the target's folder) and the link stays.

    Raises:
        TypeError: a leaf, container or key of a type that cannot be saved; nothing is written.
        ValueError: an empty key, one with '.', ``"__metadata__"`` at the top level, an int out of int64.
        IsADirectoryError: ``path`` (or the target of a link at ``path``) is a folder; nothing is written.

    >>> import os, tempfile, portable_nn as pnn
    >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
    >>> pnn.save(path, {"params": [{"W": pnn.get_backend("numpy").asarray([[1.0, 2.0]])}], "epoch": 3})
    >>> pnn.load(path, backend="array_api_strict")["params"][0]["W"].shape, pnn.load(path)["epoch"]
    ((1, 2), 3)
    """
    from safetensors.numpy import save as st_save

    tensors: dict[str, np.ndarray] = {}
    skeleton = _encode(params, "", tensors)
    fmt = _FORMAT if _is_format_1(skeleton) else _FORMAT_2
    meta = {"format": fmt, "version": __version__, "tree": json.dumps(skeleton)}
    _write_atomic(os.fspath(path), st_save(tensors, metadata=meta))


def _write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to a temp file next to ``path``, fsync, rename over ``path`` (keeping its mode bits)."""
    path = os.path.realpath(path)  # a symbolic link: write its target, as open(path, "wb") would (not replace it)
    if os.path.isdir(path):  # os.replace would name the temporary file, not the folder the user passed
        raise IsADirectoryError(
            f"save: {path!r} is a directory, not a file; nothing was written. Pass a file path, "
            f"e.g. {os.path.join(path, 'model.safetensors')!r}."
        )
    try:
        mode: int | None = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = None
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".tmp-{secrets.token_hex(16)}.safetensors")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)  # as open()
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _read_checked(path: str) -> tuple[dict[str, Any], bytes]:
    """Read and validate the safetensors header without trusting the file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise CheckpointError(f"load: no checkpoint at {path!r}.") from None
    except IsADirectoryError:
        raise CheckpointError(f"load: {path!r} is a directory, not a checkpoint file.") from None
    if len(data) < 8:
        raise CheckpointError(f"load: {path!r} is truncated ({len(data)} bytes); not a safetensors file.")
    (n,) = struct.unpack("<Q", data[:8])
    if n > _MAX_HEADER or 8 + n > len(data):
        if data[8:9] == b"{" or (len(data) == 8 and n <= _MAX_HEADER):
            kind = f"truncated: the header needs {n} bytes but the file has {len(data) - 8} after the length"
        elif data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
            kind = "a pickle file, which is never unpickled"
        else:
            kind = "not a safetensors file, or truncated"
        raise CheckpointError(f"load: {path!r} has an invalid header ({kind}). Re-save it with pnn.save.")
    try:
        header = json.loads(data[8 : 8 + n])
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"load: {path!r} has a corrupted header ({e}).") from None
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise CheckpointError(f"load: {path!r} has a corrupted header (__metadata__ is not a JSON object).")
    if meta.get("format") not in (_FORMAT, _FORMAT_2):
        raise CheckpointError(
            f"load: {path!r} is a safetensors file but not a portable_nn checkpoint "
            f"(format {meta.get('format')!r}). Load it with safetensors directly."
        )
    return meta, data


class _Inconsistent(Exception):
    """The file's tree disagrees with its tensors; load raises a CheckpointError."""


def _take(leaf: Any, name: str, tensors: dict[str, np.ndarray], used: set[str]) -> np.ndarray:
    """The tensor of the leaf at path ``name``: the tree must name it by that path, and only once."""
    if leaf != name or name not in tensors or name in used:
        raise _Inconsistent(f"its tree puts {leaf!r} at {name!r} (a leaf names its path's tensor, once)")
    used.add(name)
    return tensors[name]


def _decode(node: Any, name: str, tensors: dict[str, np.ndarray], used: set[str]) -> Any:
    """The tree a JSON node at path ``name`` stands for: host arrays, Python scalars and None as leaves."""
    if node is None:
        return None
    if isinstance(node, str):
        return _take(node, name, tensors, used)
    if isinstance(node, list):
        return [_decode(c, join(name, str(i)), tensors, used) for i, c in enumerate(node)]
    if not isinstance(node, dict):
        raise _Inconsistent(f"its tree has a JSON {type(node).__name__} at {name!r}")
    if not any("." in k for k in node):
        return {k: _decode(v, join(name, k), tensors, used) for k, v in node.items()}
    if len(node) == 1 and next(iter(node)) in _SCALARS:
        ((marker, leaf),) = node.items()
        kind, dtype = _SCALARS[marker]
        t = _take(leaf, name, tensors, used)
        if t.shape != () or t.dtype != dtype:
            raise _Inconsistent(f"{name!r} is a {kind.__name__} over a {t.dtype.name}{list(t.shape)} tensor")
        return kind(t[()])
    items = node.get(".tuple")
    if not isinstance(items, list) or set(node) not in ({".tuple"}, {".tuple", ".type", ".fields"}):
        raise _Inconsistent(f"its tree has an unknown node {sorted(node)} at {name!r}")
    children = [_decode(c, join(name, str(i)), tensors, used) for i, c in enumerate(items)]
    cls = _namedtuple(node.get(".type"), node.get(".fields"))
    return sequence(tuple if cls is None or len(cls._fields) != len(children) else cls, children)


def _namedtuple(ref: Any, fields: Any) -> Any:
    """The NamedTuple class ``ref`` (``"module:qualname"``) names, or None: only a portable_nn
    module's (already imported, with the same fields); a file is untrusted, so nothing is imported."""
    if not isinstance(ref, str):
        return None
    module, _, qualname = ref.partition(":")
    if module != "portable_nn" and not module.startswith("portable_nn."):
        return None
    obj: Any = sys.modules.get(module)
    for part in qualname.split("."):
        if obj is None or not part.isidentifier() or part.startswith("__"):
            return None
        obj = getattr(obj, part, None)
    if not (isinstance(obj, type) and issubclass(obj, tuple) and hasattr(obj, "_fields")):
        return None
    defined_there = (obj.__module__, obj.__qualname__) == (module, qualname)
    return obj if defined_there and list(obj._fields) == fields else None


def load(
    path: str | os.PathLike[str],
    *,
    backend: str | Backend | None = None,
    dtype: Any = None,
    like: Any = None,
) -> Any:
    """Read a tree saved by :func:`save` onto ``backend`` (default: the default backend).

    Dicts, lists and tuples come back as they were saved; array leaves as
    arrays of ``backend`` with the saved shapes (0-d included) and dtypes;
    Python bool, int and float leaves and None as themselves. A NamedTuple
    comes back as its class when a portable_nn module (already imported)
    defines it with the same fields, as ``pnn.optim.AdamState`` and
    ``SGDState``; any other (one of yours) comes back as a plain tuple unless
    ``like`` gives its type. A file never makes load import anything.

    Args:
        dtype: cast every array leaf to this dtype; ``None`` keeps the stored
            dtypes. Python scalars stay as they are.
        like: the tree the file is meant for (e.g. ``model.init()``, or a
            checkpoint made of fresh params and ``opt.init(params)``). When
            given, the file must have the same tree (a list fits a tuple),
            shapes and Python scalar types, and after the ``dtype`` cast the
            same dtypes; the result takes its container types from ``like``.

    Raises:
        CheckpointError: (a ValueError) a missing, truncated, corrupted, foreign or pickle file, or
            with ``like`` a file for another architecture, naming the first param that differs.
            Nothing in a file is ever executed.
        TypeError: ``dtype`` is not a dtype ``backend`` supports (a ``PrecisionError`` also when
            ``dtype`` is None and the file holds a dtype the device lacks, e.g. float64).
    """
    from safetensors.numpy import load as st_load

    path = os.fspath(path)
    meta, data = _read_checked(path)
    try:
        tensors = st_load(data)
        skeleton = json.loads(meta["tree"])
    except Exception as e:  # safetensors raises its own error types on bad bodies
        raise CheckpointError(
            f"load: {path!r} is truncated or corrupted ({type(e).__name__}: {e}). Re-save it with pnn.save."
        ) from None
    be = get_backend(backend)
    used: set[str] = set()
    try:
        tree = _decode(skeleton, "", tensors, used)
        if used != set(tensors):
            raise _Inconsistent(f"tensors {sorted(set(tensors) - used)[:5]} are not in its tree")
    except (_Inconsistent, RecursionError) as e:
        raise CheckpointError(
            f"load: {path!r} is inconsistent: {e}; its tensors are {sorted(tensors)[:5]}. "
            "Re-save it with pnn.save."
        ) from None
    if like is not None:  # compared as load returns them: after the cast
        same_kind_of_tree(path, tree, like)
        try:
            tree = conform(tree, like, "", None if dtype is None else dtype_name(be.dtype(dtype)))
        except Misfit as e:
            name, problem, hint = e.args
            msg = f"load: {path!r} does not fit the model: param {name!r} {problem}. {hint}"
            raise CheckpointError(msg) from None
    try:
        return tree_map(lambda a: be.asarray(a, dtype=dtype) if isinstance(a, np.ndarray) else a, tree)
    except PrecisionError as e:  # a float64 file onto a device without float64: say which call and file
        raise PrecisionError(
            f"load: {path!r} holds arrays this backend cannot hold as saved: {e} Here: pass dtype= to load "
            "to cast them, e.g. pnn.load(path, backend=..., dtype='float32')."
        ) from None
