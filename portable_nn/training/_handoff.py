"""Large host arrays from a worker to the client on its machine: a file in ``/dev/shm``, mapped, not read.

The all-reduce's client receives the params and optimizer state once per chunk.
Through Dask's comm that costs the client a copy of every byte (its socket
reads, into freshly allocated pages); a worker that writes them to a file in
RAM (tmpfs) instead hands the client a name it maps copy-on-write: no copy, and
the pages cost only when they are read. Only trees with at least ``min_bytes``
of NumPy arrays travel this way, and only where ``/dev/shm`` takes the file;
otherwise the tree itself goes through Dask. The client removes the file as
soon as it is mapped (the mapping stays); the worker removes any file whose
reader never came (:func:`discard`).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import tempfile
from typing import Any

import numpy as np

from .._tree import tree_flatten, tree_unflatten

__all__ = ["Parcel", "discard", "pack", "unpack"]

SHM = "/dev/shm"


class Slot:
    """Where one array is in a parcel's file: byte offset, shape, dtype."""

    __slots__ = ("dtype", "offset", "shape")

    def __init__(self, offset: int, shape: tuple[int, ...], dtype: Any) -> None:
        self.offset, self.shape, self.dtype = offset, shape, dtype


class Parcel:
    """A tree whose arrays are in the file ``path`` (``size`` bytes; their leaves are :class:`Slot`)."""

    __slots__ = ("path", "size", "tree")

    def __init__(self, path: str, size: int, tree: Any) -> None:
        self.path, self.size, self.tree = path, size, tree


def pack(tree: Any, min_bytes: int = 1 << 20) -> Any:
    """``tree`` with its NumPy arrays written to one new file in ``/dev/shm``: a :class:`Parcel`; or ``tree``
    itself when its arrays are smaller than ``min_bytes`` or the file cannot be written (no ``/dev/shm``,
    full)."""
    leaves, treedef = tree_flatten(tree)
    arrays = [i for i, a in enumerate(leaves) if isinstance(a, np.ndarray) and a.dtype != object]
    size = sum(leaves[i].nbytes for i in arrays)
    if size < min_bytes or not os.path.isdir(SHM):
        return tree
    try:
        fd, path = tempfile.mkstemp(prefix="pnn-handoff-", dir=SHM)
    except OSError:
        return tree
    slots = list(leaves)
    try:
        with os.fdopen(fd, "wb") as f:
            at = 0
            for i in arrays:
                a = np.ascontiguousarray(leaves[i])
                f.write(a.reshape(-1).view(np.uint8).data)  # any dtype (bfloat16 too), byte for byte
                slots[i] = Slot(at, tuple(leaves[i].shape), a.dtype)  # (ascontiguousarray makes 0-d 1-d)
                at += a.nbytes
    except OSError:  # /dev/shm full
        discard(path)
        return tree
    return Parcel(path, size, tree_unflatten(treedef, slots))


def unpack(obj: Any) -> Any:
    """The tree of :func:`pack`, its arrays views of the file mapped copy-on-write (writable; the file is
    removed at once); other objects as they are."""
    if not isinstance(obj, Parcel):
        return obj
    try:
        with open(obj.path, "rb") as f:
            if os.fstat(f.fileno()).st_size != obj.size:
                raise OSError(f"the handoff file {obj.path} does not hold the {obj.size} bytes written")
            mapped = mmap.mmap(f.fileno(), obj.size, access=mmap.ACCESS_COPY)
    finally:
        discard(obj.path)
    leaves, treedef = tree_flatten(obj.tree)
    return tree_unflatten(treedef, [
        np.frombuffer(mapped, dtype=s.dtype, count=int(np.prod(s.shape)), offset=s.offset).reshape(s.shape)
        if isinstance(s, Slot) else s for s in leaves
    ])


def discard(path: str) -> None:
    """Remove a handoff file if it is still there."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
