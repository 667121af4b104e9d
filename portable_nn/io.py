"""save / load params as safetensors (never pickle), and to_backend.

A file holds one tensor per leaf, named by its pytree path (``"0.W"``), and
metadata: the format tag, the library version and the tree structure. Any
file loads onto any backend and device.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import struct
from typing import Any

import numpy as np

from ._backend import Backend, to_numpy
from ._check import dtype_name
from ._errors import CheckpointError
from ._select import get_backend
from ._tree import tree_map, tree_paths

__all__ = ["save", "load", "to_backend"]

_FORMAT = "portable_nn.params/1"
_MAX_HEADER = 100 * 1024 * 1024
_RESERVED = "__metadata__"  # safetensors' header entry: no tensor may have this name


def _skeleton(tree: Any, prefix: str = "") -> Any:
    """The tree with each leaf replaced by its path string (JSON-serialisable)."""
    if isinstance(tree, dict):
        for k in tree:
            if not isinstance(k, str) or "." in k:
                raise TypeError(f"save: dict keys must be strings without '.', got {k!r}.")
            if k == _RESERVED and not prefix:
                raise ValueError(
                    f"save: the top-level dict key {k!r} is reserved: safetensors keeps the file's header "
                    "under that name, so the file could never be loaded. Rename the key, e.g. to 'metadata'."
                )
        return {k: _skeleton(v, f"{prefix}.{k}" if prefix else k) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_skeleton(v, f"{prefix}.{i}" if prefix else str(i)) for i, v in enumerate(tree)]
    return prefix


def save(path: str | os.PathLike[str], params: Any) -> None:
    """Write ``params`` (a pytree of arrays of any backend) to a safetensors file.

    The write is atomic: a temporary file in the same directory is written,
    fsynced and renamed over ``path``, so a crash never leaves a half-written
    checkpoint in place of the previous one. An overwritten file keeps its
    permission bits; a new file gets ``0o666`` less the umask.
    """
    from safetensors.numpy import save as st_save

    from . import __version__

    skeleton = _skeleton(params)  # checks the keys first: nothing is written on a bad tree
    tensors = {}
    for name, leaf in tree_paths(params):
        if not hasattr(leaf, "shape"):
            raise TypeError(f"save: leaf {name!r} is a {type(leaf).__name__}, not an array.")
        tensors[name] = np.asarray(to_numpy(leaf), order="C")  # ascontiguousarray would make 0-d 1-d
    meta = {"format": _FORMAT, "version": __version__, "tree": json.dumps(skeleton)}
    _write_atomic(os.fspath(path), st_save(tensors, metadata=meta))


def _write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path``, fsync it and rename it over ``path``.

    The file keeps the permission bits of the file it replaces; a new file gets
    ``0o666`` less the umask, as ``open(path, "wb")`` would give it.
    """
    try:
        mode: int | None = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = None
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".tmp-{secrets.token_hex(16)}.safetensors")
    # mode 0o666 less the umask, like open(); mkstemp's would be 0o600
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
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
    if meta.get("format") != _FORMAT:
        raise CheckpointError(
            f"load: {path!r} is a safetensors file but not a portable_nn checkpoint "
            f"(format {meta.get('format')!r}). Load it with safetensors directly."
        )
    return meta, data


def load(
    path: str | os.PathLike[str],
    *,
    backend: str | Backend | None = None,
    dtype: Any = None,
    like: Any = None,
) -> Any:
    """Read params saved by :func:`save` onto ``backend`` (default: the default backend).

    Args:
        dtype: cast every leaf to this dtype; ``None`` keeps the stored dtypes.
        like: params of the model the file is meant for (e.g. ``model.init()``);
            when given, the file must have the same tree and shapes, and after
            the ``dtype`` cast the same dtypes.

    Raises:
        CheckpointError (a ValueError): missing, truncated, corrupted, foreign
        or pickle files, or (with ``like``) a file for another architecture,
        naming the first param that differs. Nothing in the file is ever executed.
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
    paths = list(tree_paths(skeleton))
    expected = {p for p, _ in paths}
    if any(leaf != p for p, leaf in paths) or expected != set(tensors):
        raise CheckpointError(
            f"load: {path!r} is inconsistent: tree names {sorted(expected)[:5]} but tensors are "
            f"{sorted(tensors)[:5]}."
        )
    if like is not None:  # compared as load returns them: after the cast
        _check_fits(path, tensors, like, None if dtype is None else dtype_name(be.dtype(dtype)))
    return tree_map(lambda name: be.asarray(tensors[name], dtype=dtype), skeleton)


def _check_fits(path: str, tensors: dict[str, np.ndarray], like: Any, cast: str | None) -> None:
    """Raise CheckpointError naming the first param of ``like`` the file (cast to ``cast``) does not match."""
    wanted = dict(tree_paths(like))
    for name in sorted(set(wanted) | set(tensors), key=lambda n: (n not in wanted, n)):
        hint = "Was it saved from another architecture? Build the model it was saved from."
        if name not in tensors:
            problem = "is missing from the file"
        elif name not in wanted:
            problem = "is in the file but not in the model"
        else:
            got, want = tensors[name], wanted[name]
            want_shape, want_dtype = list(want.shape), dtype_name(want.dtype)
            shape_fits = list(got.shape) == want_shape
            if shape_fits and (cast or got.dtype.name) == want_dtype:
                continue
            problem = f"is {got.dtype.name}{list(got.shape)} in the file"
            if cast:
                problem += f", {cast}{list(got.shape)} after dtype={cast!r},"
            problem += f" but {want_dtype}{want_shape} in the model"
            if shape_fits:
                hint = f"Pass dtype={want_dtype!r} to load to cast it to the model's dtype."
        raise CheckpointError(f"load: {path!r} does not fit the model: param {name!r} {problem}. {hint}")


def to_backend(tree: Any, backend: str | Backend, *, dtype: Any = None) -> Any:
    """Copy every array leaf of ``tree`` to ``backend`` (through host memory).

    The result never shares memory with ``tree``, also from a backend to
    itself: writing into a result leaf in place (``a[...] = 0``, torch's
    ``zero_()``) leaves the source as it was, and the other way round.

    Args:
        tree: a pytree of arrays of any backend and device, any shapes and dtypes.
        dtype: optional cast, e.g. ``"float32"``; ``None`` keeps each leaf's dtype.

    Returns:
        A tree of the same structure whose leaves are new arrays of ``backend``,
        each of its source's shape.
    """
    be = get_backend(backend)
    # to_numpy may return a view of the source (NumPy, torch on CPU, JAX, array_api_strict) and
    # be.asarray may wrap its input without copying (NumPy, torch, array_api_strict): copy in between.
    return tree_map(lambda a: be.asarray(np.array(to_numpy(a), copy=True), dtype=dtype), tree)
