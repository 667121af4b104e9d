"""The all-reduce exchange of ``fit(client=)``: the workers sum their gradients among themselves.

A runner of the epoch driver. Each worker holds a :class:`~._allreduce_worker.Member`
(its shards, a params replica and an optimizer-state replica); the members form
a ``torch.distributed`` process group (gloo, or NCCL on GPUs; see
``_collective``; the first member serves the group's store). The client does not
need torch. :meth:`AllReduceRunner.run` sends each member the chunk's row
orders (host arrays) and the dropout RNG's state, and the members run the steps
themselves; the client only waits, and receives per chunk the epochs' loss
totals and correct counts, and the params and optimizer state (one member's,
once per chunk). Its work per step does not grow with the model: there is none.

A chunk is the whole fit when the driver needs nothing between epochs, else
one epoch (validation, early stopping, ``reduce_lr``, callbacks and
checkpoints need the params after each). With ``checkpoint_every`` the members
also pause every that many steps, and the client fetches the params for the
checkpoint. Ctrl-C stops every member after the same step (they decide it in
that step's sum), and fit raises ``FitInterrupted`` with that step's params.

Faults: a lost worker (its process gone: the survivors' sum fails at once; or
hung: no sum within ``timeout`` seconds) is dropped; the survivors are brought
to the last step all of them completed, its shards are moved to the least-loaded
survivors, a new group is formed (new store, new port) and the chunk goes on.
Per-shard sums make the result independent of where shards live (to rounding:
the sum's order changes with the group). Losing every worker, or the client,
raises :class:`ClusterError` with the last params the client received (a chunk's
start, or a checkpoint pause).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._errors import ClusterError, FitInterrupted
from ..layers.base import Params
from ._epoch import Loop, epoch_lrs, nonfinite, record
from ._members import RETRIES, AllLost, MemberGroup, show
from ._shards import check_client, is_lost, start

__all__ = ["AllReduceRunner"]

# test hook: called in the client after each chunk (and checkpoint pause) with the runner
_after_chunk: Callable[[AllReduceRunner], None] | None = None

_ORDER_ROWS = 1 << 22  # row indices sent to each member per chunk, at most (unless an epoch has more)


class AllReduceRunner(MemberGroup):
    """Chunks of steps on the workers, gradients summed by an all-reduce among them (module docstring)."""

    def __init__(self, client: Any, loop: Loop, micro: int, params: Params, *, one_epoch: bool,
                 every: int | None, timeout: float) -> None:
        check_client(client)
        far = sorted(w for w in client.scheduler_info(n_workers=-1)["workers"] if not _loopback(w))
        if far:
            raise ValueError(
                f"fit: the all-reduce runs between workers on this machine (its process group listens on "
                f"127.0.0.1), but worker(s) {', '.join(far)} are elsewhere. Pass "
                "client=pnn.DataParallel(client, exchange='hub') for a cluster of several machines."
            )
        self.spe = -(-loop.source.n // loop.batch_size)
        self.timeout = timeout
        self.generation = 0
        self.grouped = False
        self._params: Any = None
        self._state: Any = None
        self.collective_s, self.steps_run, self.steps_done = 0.0, 0, 0
        self._running = False
        from ._allreduce_worker import Member

        super().__init__(client, loop, micro, params, Member)
        for w in [w for w in self.actors if w not in self.owner.values()]:  # no rows (fewer rows than workers)
            self.actors.pop(w)
            self.futures.pop(w).release()
        self.one_epoch = one_epoch or loop.on_step is not None
        self.every = every if loop.on_step is not None else None
        try:
            self.exchange = self._choose_backend()
            self._form_group()
        except BaseException as e:
            self.close()
            if isinstance(e, AllLost):
                raise ClusterError(f"fit: {e} before training started; the error's .params are the ones given.",
                                   params=params, epoch=0, step=0, history=loop.history) from None
            raise

    def actor_args(self) -> tuple[Any, ...]:
        loop = self.loop
        return ({"batch_size": loop.batch_size, "micro": self.micro, "n": self.n, "bounds": self.bounds.tolist(),
                 "counts_correct": loop.source.counts_correct, "check": loop.on_nonfinite != "ignore",
                 "timeout": self.timeout},)

    def chunk(self, remaining: int) -> int:
        """Epochs the next :meth:`run` covers: one when the driver needs each epoch's params, else all that
        remain, up to about 4M rows of row orders (each member gets the chunk's orders at its start)."""
        return 1 if self.one_epoch else max(1, min(remaining, _ORDER_ROWS // max(self.n, 1)))

    # --- the group -----------------------------------------------------------------------------------------

    def run(
        self, params: Params, state: Any, orders: list[np.ndarray | None], epoch: int,
        start_step: int = 0, total: Any = 0.0, correct: Any = None,
    ) -> tuple[Params, Any, list[tuple[float, Any]]]:
        """Train one epoch per order (the first from step ``start_step``) on the workers. Returns the params,
        the optimizer state and each epoch's ``(loss, n_correct)``."""
        loop = self.loop
        known = (params, epoch, start_step)  # the last params the client holds, and where they are
        try:
            if params is not self._params or state is not self._state:
                self._sync(params, state)
            counts = loop.source.counts_correct
            chunk: dict[str, Any] | None = {
                "orders": orders, "start": start_step, "done": epoch * self.spe + start_step,
                "total": float(total), "correct": (int(correct) if correct is not None else 0) if counts else None,
                "rng": loop.rng.bit_generator.state if self.uses_rng else None,
            }
            end = (epoch + len(orders)) * self.spe
            done = epoch * self.spe + start_step
            while True:
                pause = None if self.every is None else (done // self.every + 1) * self.every
                report = self._run(None if pause is None or pause >= end else pause, chunk)
                chunk = None
                done = report["done"]
                if self.uses_rng:
                    loop.rng.bit_generator.state = report["rng"]
                status = report["status"]
                if status == "stopped" and done == end:  # the chunk's last step: nothing left to stop
                    status = "done"  # (the driver sees the Ctrl-C next, as after any chunk)
                if status == "drift":
                    raise ClusterError(
                        f"fit: the workers' params replicas differ after step {done} (their checksums disagree): "
                        "a worker computed another update (a library version or device that rounds differently?). "
                        "The error's .params are the last ones the client received.",
                        params=known[0], epoch=known[1], step=known[2], history=loop.history,
                    )
                if status == "nonfinite":
                    e, step, value = report["nonfinite"]
                    before, _ = self._fetch()
                    nonfinite(loop, before, epoch + e, step, value)
                if status == "done":
                    break
                params, state = self._fetch()
                known = (params, epoch + report["e"], report["step"])
                at_end = report["step"] == 0 and report["e"] > 0  # the pause falls on an epoch's end
                e = report["e"] - 1 if at_end else report["e"]
                tot, cor = (report["epochs"][-1] if at_end else (report["total"], report["correct"]))
                if loop.on_step is not None:
                    loop.on_step(params, state, epoch + e, self.spe if at_end else report["step"], tot, cor)
                if _after_chunk is not None:
                    _after_chunk(self)
                if status == "stopped":
                    raise FitInterrupted(params, self._history(report, state))
            params, state = self._fetch()
        except AllLost as err:
            raise ClusterError(
                f"fit: {err} at epoch {known[1]}, step {known[2]} or later; the error's .params are those after "
                f"epoch {known[1]}'s step {known[2]}, the last the client received (a chunk's start or a "
                "checkpoint pause). Restart the workers (or the client) and fit again from them.",
                params=known[0], epoch=known[1], step=known[2], history=loop.history,
            ) from None
        stats = [(loop.epoch_loss(t), c) for t, c in report["epochs"]]
        if loop.on_step is not None:
            t, c = report["epochs"][-1]
            loop.on_step(params, state, epoch + len(orders) - 1, self.spe, t, c)
        if _after_chunk is not None:
            _after_chunk(self)
        return params, state, stats

    def _run(self, pause: int | None, chunk: dict[str, Any] | None) -> dict[str, Any]:
        """One ``run`` call on every member; after a fault, the survivors are aligned and re-grouped and the
        call repeated. Returns the first-ranked member's report."""
        failures = 0
        while True:
            ranked = sorted(self.actors)
            futs = {w: start(self.actors[w], "run", pause, chunk) for w in ranked}
            self._running = True
            results, lost, errors = self._wait(futs, run=True)
            self._running = False
            if errors:
                raise errors[0]
            reports = [results[w] for w in ranked if w in results]
            if not lost and all(r["status"] != "comm_failed" for r in reports):
                first = reports[0]
                if any(r["done"] != first["done"] for r in reports):
                    raise RuntimeError(f"fit: the workers stopped at different steps: {[r['done'] for r in reports]}")
                self.collective_s = first["collective_s"]
                self.steps_run, self.steps_done = first["steps_run"], first["done"]
                if self.loop.bar is not None:
                    show(self.loop.bar, first["done"])
                return first
            if not results:
                raise AllLost("every worker of the cluster was lost")
            done = min(r["done"] for r in results.values())
            for w, r in results.items():
                if r["done"] != done:
                    try:
                        start(self.actors[w], "rollback", done).result()
                    except Exception as e:
                        if not is_lost(e):
                            raise
                        lost.append(w)
            if lost:
                failures = 0
                self._drop(lost, f"continuing from step {done}")
            else:
                failures += 1
                if failures >= RETRIES:
                    why = next((r["error"] for r in reports if r["error"]), "no reason given")
                    raise AllLost(f"the all-reduce failed {failures} times at step {done} with no worker lost ({why}); "
                                  "raise pnn.DataParallel's timeout above the longest step")
            self._form_group()
            chunk = None

    def _history(self, report: dict[str, Any], state: Any) -> dict[str, list[float]]:
        """The driver's history with the chunk's completed epochs added (for ``FitInterrupted``)."""

        history = {k: list(v) for k, v in self.loop.history.items()}
        k = len(report["epochs"])
        if k:
            count = getattr(state, "count", None)
            at = state._replace(count=int(count) - report["step"]) if count is not None else state
            lrs = epoch_lrs(self.spec.optimizer, at, k, self.spe)
            for (t, c), lr in zip(report["epochs"], lrs, strict=True):
                record(history, self.loop.epoch_loss(t), c, self.loop.source.n_labels, lr)
        return history



def _loopback(address: str) -> bool:
    host = address.split("://")[-1].rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")
