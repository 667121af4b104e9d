"""The collective of ``fit(client=)``'s all-reduce: ``torch.distributed`` process groups on loopback.

Why ``torch.distributed``: one library gives both collectives the project
needs, gloo on the CPU and NCCL on CUDA GPUs, for every params library: NumPy
buffers cross with ``torch.from_numpy`` and CuPy buffers with DLPack, both
without a copy. A process group is an object (no global default group), made
from a key-value store, with a timeout on every collective, so a group can be
dropped and formed again from the survivors after a worker is lost. The
alternatives: ``cupyx.distributed`` (NCCL only: CuPy on GPUs, nothing for
NumPy workers), ``mpi4py`` (needs an MPI launcher to start the processes, which
Dask already started, and an MPI job does not survive a lost rank).

The first worker of a group serves its store (:class:`Rendezvous`: a
``TCPStore`` listening on 127.0.0.1 only); each worker joins with a
:class:`Group`. Every address is loopback: the all-reduce runs between workers
on the client's machine. The client never imports torch.

Copies per step (see :meth:`Group.all_reduce`): the gradients are flattened
into one new buffer (one copy, which the sum is done in, in place); NumPy,
torch and CuPy (with NCCL) buffers are the collective's tensors themselves;
JAX and array-api-strict buffers, and GPU buffers without NCCL, are copied to
a host tensor and back.
"""

from __future__ import annotations

import datetime
import os
import socket
from typing import Any

import numpy as np

from ..backends import to_numpy

__all__ = ["CollectiveError", "Group", "Rendezvous", "nccl_problem"]

HOST = "127.0.0.1"
JOIN_TIMEOUT = 60.0  # seconds joining a group may take at least (a busy machine connects slowly)


class CollectiveError(Exception):
    """A collective failed: a peer is gone, or did not join within the timeout."""


def _dist() -> Any:
    try:
        import torch.distributed as dist
    except ImportError as e:
        raise ImportError(
            "fit(client=): the all-reduce between workers needs torch.distributed: pip install "
            f"'portable_nn[dask]' (torch==2.13.0), or pass client=pnn.DataParallel(client, exchange='hub') ({e})."
        ) from None
    if not dist.is_available():
        raise ImportError(
            "fit(client=): this torch build has no torch.distributed; install torch==2.13.0 from PyPI, or pass "
            "client=pnn.DataParallel(client, exchange='hub')."
        )
    return dist


class Rendezvous:
    """The store of one process group: a ``TCPStore`` on a free port of 127.0.0.1 only.

    (A ``TCPStore`` given a port listens on every interface; this one is given a socket bound to loopback.)
    """

    def __init__(self, timeout: float) -> None:
        dist = _dist()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((HOST, 0))
            sock.listen(128)
            self.port = int(sock.getsockname()[1])
            self.store: Any = dist.TCPStore(HOST, self.port, is_master=True, wait_for_workers=False,
                                            timeout=datetime.timedelta(seconds=timeout),
                                            master_listen_fd=sock.fileno())
        except BaseException:
            sock.close()
            raise
        sock.detach()  # the store owns the listening socket now (and closes it)

    def close(self) -> None:
        self.store = None


def nccl_problem() -> str | None:
    """Why this process cannot run NCCL collectives through torch, or None when it can."""
    try:
        dist = _dist()
        import torch
    except ImportError as e:
        return str(e)
    if not dist.is_nccl_available():
        return f"this torch build ({torch.__version__}) has no NCCL"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA device (a CPU-only build, or no driver)"
    return None


def gpu_identity() -> str | None:
    """The UUID of this process's CUDA device 0 as torch sees it, or None."""
    try:
        import torch

        if torch.cuda.is_available():
            return str(torch.cuda.get_device_properties(0).uuid)
    except Exception:  # noqa: BLE001 - a probe
        return None
    return None


class Group:
    """One worker's membership of a process group (``backend``: ``"gloo"`` or ``"nccl"``).

    Raises :class:`CollectiveError` when joining or a collective fails or times out; the group is then
    dropped (its connections closed, so peers waiting on this worker fail at once instead of timing out).
    """

    def __init__(self, port: int, generation: int, rank: int, world: int, backend: str, timeout: float) -> None:
        dist = _dist()
        self.backend, self.rank, self.world = backend, rank, world
        self.timeout = datetime.timedelta(seconds=timeout)
        joining = datetime.timedelta(seconds=max(timeout, JOIN_TIMEOUT))
        try:
            store = dist.TCPStore(HOST, port, is_master=False, timeout=joining)
            store = dist.PrefixStore(f"pnn/{generation}/", store)
            if backend == "nccl":
                # a collective that times out raises in wait() (not in a watchdog thread that ends the process)
                os.environ.setdefault("TORCH_NCCL_BLOCKING_WAIT", "1")
                os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "0")
                os.environ.setdefault("NCCL_SOCKET_IFNAME", "lo")  # NCCL's bootstrap on loopback too
                import torch

                torch.cuda.set_device(0)  # LocalCUDACluster: each worker's own GPU is its device 0
                options = dist.ProcessGroupNCCL.Options()
                options._timeout = self.timeout  # (NCCL connects at the first collective)
                self.pg: Any = dist.ProcessGroupNCCL(store, rank, world, options)
            else:
                options = dist.ProcessGroupGloo._Options()
                options._devices = [dist.ProcessGroupGloo.create_device(hostname=HOST)]
                options._timeout = joining
                self.pg = dist.ProcessGroupGloo(store, rank, world, options)
                self.pg.set_timeout(self.timeout)  # the collectives' own
        except Exception as e:  # noqa: BLE001 - a failed rendezvous (a peer lost, a timeout)
            raise CollectiveError(f"joining the group failed: {type(e).__name__}: {e}") from None
        self.device = "cuda" if backend == "nccl" else "cpu"

    def close(self) -> None:
        """Leave the group: its connections close (peers blocked on this worker fail at once)."""
        self.pg = None

    def _run(self, work: Any) -> None:
        try:
            work.wait(self.timeout)
        except Exception as e:  # noqa: BLE001 - a peer lost (connection closed) or the timeout
            self.close()
            raise CollectiveError(f"{type(e).__name__}: {str(e)[:300]}") from None

    def all_reduce(self, buf: Any, xp: Any, device: Any) -> Any:
        """The elementwise sum of every member's ``buf`` (see :meth:`_bridged`)."""
        dist = _dist()
        opts = dist.AllreduceOptions()
        opts.reduceOp = dist.ReduceOp.SUM
        return self._bridged(buf, xp, device, lambda t: self._run(self.pg.allreduce([t], opts)))

    def broadcast(self, buf: Any, xp: Any, device: Any, root: int) -> Any:
        """Member ``root``'s ``buf`` on every member (each passes a buffer of the same shape and dtype)."""
        dist = _dist()
        opts = dist.BroadcastOptions()
        opts.rootRank = root
        return self._bridged(buf, xp, device, lambda t: self._run(self.pg.broadcast([t], opts)))

    def _bridged(self, buf: Any, xp: Any, device: Any, op: Any) -> Any:
        """Run the collective ``op(tensor)`` on ``buf`` (1-d, an array of ``xp`` on ``device``, owned by the
        caller and not used after); the result as an array of ``xp`` on ``device``: ``buf`` itself where the
        collective works on it in place (NumPy and torch buffers; CuPy and torch CUDA ones with NCCL)."""
        import torch

        if self.pg is None:
            raise CollectiveError("the group was dropped after an earlier failure")
        kind = type(buf).__module__.split(".")[0]
        if kind == "numpy" and self.device == "cpu":
            op(torch.from_numpy(buf))
            return buf
        if kind == "torch" and buf.device.type == self.device:
            op(buf)
            return buf
        if kind == "cupy" and self.device == "cuda":
            tensor = torch.utils.dlpack.from_dlpack(buf)  # the same memory, stream-ordered by DLPack
            op(tensor)
            torch.cuda.current_stream().synchronize()  # CuPy's next kernels see the sum, whatever its stream
            return buf
        if self.device == "cuda":  # JAX on a GPU: a device copy (a JAX buffer is never written in place)
            tensor = torch.utils.dlpack.from_dlpack(buf).clone()
            op(tensor)
            torch.cuda.current_stream().synchronize()
            return xp.from_dlpack(tensor)
        host = np.array(to_numpy(buf), copy=True)  # JAX, array-api-strict; GPU buffers without NCCL
        op(torch.from_numpy(host))
        return xp.asarray(host, device=device)

    def all_gather(self, values: np.ndarray) -> np.ndarray:
        """Every member's ``values`` (a small 1-d float64 host array): ``(world, len(values))``."""
        import torch

        if self.pg is None:
            raise CollectiveError("the group was dropped after an earlier failure")
        mine = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64)).to(self.device)
        out = [torch.zeros_like(mine) for _ in range(self.world)]
        self._run(self.pg.allgather([out], [mine]))
        return np.stack([t.cpu().numpy() for t in out])
