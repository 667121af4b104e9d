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

import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from .._errors import ClusterError, FitInterrupted
from .._tree import tree_map
from ..backends import adapter_of, to_numpy
from ..layers.base import Params
from ._epoch import Loop, nonfinite
from ._handoff import unpack
from ._shards import AllLost, ShardedRunner, check_client, is_lost, live, start

__all__ = ["AllReduceRunner"]

# test hook: called in the client after each chunk (and checkpoint pause) with the runner
_after_chunk: Callable[[AllReduceRunner], None] | None = None

_RETRIES = 3
_ORDER_ROWS = 1 << 22  # row indices sent to each member per chunk, at most (unless an epoch has more)  # failed collectives in a row with no worker lost before fit gives up


def _host(a: Any) -> Any:
    return np.asarray(to_numpy(a)) if adapter_of(a) is not None else a


class AllReduceRunner(ShardedRunner):
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

    def _choose_backend(self) -> str:
        """``"nccl"`` when every worker's replica is on its own GPU and NCCL works there, else ``"gloo"``."""
        caps = self._everyone("capabilities")
        if not any(c["gpu"] for c in caps.values()):
            return "gloo"
        why = [f"{w}: {c['nccl']}" for w, c in sorted(caps.items()) if c["nccl"]]
        ids = [c["gpu_id"] for c in caps.values()]
        if not why and len(set(ids)) < len(ids):
            why = ["two or more workers share one GPU (NCCL needs one GPU per worker: dask_cuda.LocalCUDACluster)"]
        if why:
            warnings.warn(
                "fit: NCCL cannot run the all-reduce (" + "; ".join(why) + "); the gradients cross through host "
                "memory over gloo instead (a device-to-host and a host-to-device copy per step).",
                RuntimeWarning, stacklevel=5,
            )
            return "gloo"
        return "nccl"

    def _form_group(self) -> None:
        """A new process group of the current workers (its store served by the first, on a new port of
        127.0.0.1); lost workers are dropped."""
        attempts = 0
        while True:
            if not self.actors:
                raise AllLost("every worker of the cluster was lost")
            self.generation += 1
            ranked = sorted(self.actors)
            try:
                port = start(self.actors[ranked[0]], "open_store").result()
            except Exception as e:
                if not is_lost(e):
                    raise
                self._drop([ranked[0]], f"forming a new all-reduce group (generation {self.generation + 1})")
                continue
            futs = {w: start(self.actors[w], "join", port, self.generation, r, len(ranked), self.exchange)
                    for r, w in enumerate(ranked)}
            results, lost, errors = self._wait(futs)
            if errors:
                raise errors[0]
            failed = {w: why for w, why in results.items() if why is not None}
            if not lost and not failed:
                self.grouped = True
                return
            if lost:
                self._drop(lost, f"forming a new all-reduce group (generation {self.generation + 1})")
            else:
                attempts += 1
                if attempts >= _RETRIES:
                    raise AllLost(f"the workers could not form a process group: {sorted(failed.values())[0]}")

    def _drop(self, lost: list[str], then: str) -> None:
        """Forget lost workers and move their shards to the others."""
        moved = {sid: w for sid, w in self.owner.items() if w in lost}
        if set(self.actors) - set(lost):
            self._warn_lost(lost, moved, then)
        self._place(moved, list(lost))

    def _everyone(self, method: str, *args: Any) -> dict[str, Any]:
        """``method(*args)`` on every member (faults: drop the lost ones, re-form the group, ask the rest again)."""
        while True:
            results, lost, errors = self._wait({w: start(a, method, *args) for w, a in self.actors.items()})
            if errors:
                raise errors[0]
            if not lost:
                return results
            self._drop(lost, "re-forming the all-reduce group")
            if self.grouped:
                self._form_group()

    # --- waiting on the members ------------------------------------------------------------------------------

    def _wait(self, futs: dict[str, Any], run: bool = False) -> tuple[dict[str, Any], list[str], list[BaseException]]:
        """Wait for every call: ``(results, lost workers, errors the calls raised)``.

        Lost: the call failed because the worker is gone; or, once a call came back with a failed collective
        (or with an error), no answer within ``timeout`` seconds more; or, for ``run`` calls with nothing back
        at all, no step done between two probes ``timeout`` seconds apart by any of them (a member waiting in a
        collective is alive: one hung member makes the others' sums time out first). While ``run`` calls are
        pending, Ctrl-C asks every member to stop and the progress bar is kept up to date.
        """
        loop = self.loop
        results: dict[str, Any] = {}
        lost: list[str] = []
        errors: list[BaseException] = []
        pending = dict(futs)
        woken = threading.Event()  # set (in the client's event loop) when any call ends: waiting costs no CPU
        for f in pending.values():
            self._on_done(f, woken)
        failed_at: float | None = None
        stop_sent = False
        now = time.monotonic()
        probe_at = now + self.timeout
        seen: dict[str, tuple[int, bool]] = {}
        bar_at = now + 0.5
        while pending:
            woken.clear()
            if not live(self.client):
                raise AllLost(f"the client is {self.client.status} (disconnected from the scheduler)")
            for w, f in list(pending.items()):
                if not f.done():
                    continue
                del pending[w]
                try:
                    results[w] = out = f.result()
                except Exception as e:
                    if is_lost(e):
                        lost.append(w)
                    else:
                        errors.append(e)
                    failed_at = failed_at or time.monotonic()
                    continue
                if isinstance(out, dict) and out.get("status") == "comm_failed":
                    failed_at = failed_at or time.monotonic()
            if not pending:
                break
            now = time.monotonic()
            if run and loop.interrupts.pending and not stop_sent:
                for w in pending:
                    start(self.actors[w], "request_stop")
                stop_sent = True
            if failed_at is not None and now - failed_at > self.timeout:
                lost += sorted(pending)  # hung: the others gave up on it
                break
            if run and (now >= probe_at or (loop.bar is not None and now >= bar_at)):
                seen, stalled = self._probe(pending, seen)
                if now >= probe_at:
                    if stalled and len(stalled) == len(pending):
                        lost += sorted(pending)
                        break
                    probe_at = now + self.timeout
                if loop.bar is not None and seen:
                    _show(loop.bar, max(d for d, _ in seen.values()))
                    bar_at = now + 0.5
            # a Ctrl-C is seen within half a second (the signal handler does not end the wait)
            woken.wait(min(0.5, max(probe_at - now, 0.0) if run else 0.5,
                           max(bar_at - now, 0.0) if run and loop.bar is not None else 0.5))
        return results, lost, errors

    def _on_done(self, fut: Any, woken: threading.Event) -> None:
        """Set ``woken`` when the actor call ``fut`` ends."""
        if fut.done():
            woken.set()
            return

        async def wait() -> None:
            try:
                await fut
            except BaseException:  # noqa: BLE001 - its outcome is read by _wait
                pass
            woken.set()

        self.client.loop.add_callback(wait)

    def _probe(self, pending: dict[str, Any], seen: dict[str, tuple[int, bool]]) -> tuple[dict[str, Any], list[str]]:
        """Each pending member's ``(steps done, in a collective)``; the members with no progress since ``seen``
        and not waiting in a collective (or not answering)."""
        now: dict[str, tuple[int, bool]] = {}
        stalled = []
        for w in pending:
            try:
                now[w] = start(self.actors[w], "progress").result(timeout=min(self.timeout, 10.0))
            except Exception:  # noqa: BLE001 - no answer: its event loop is stuck, or it is gone
                stalled.append(w)
                continue
            if w in seen and seen[w][0] == now[w][0] and not now[w][1]:
                stalled.append(w)
        return now, stalled

    # --- the chunks ---------------------------------------------------------------------------------------

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
                    _show(self.loop.bar, first["done"])
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
                if failures >= _RETRIES:
                    why = next((r["error"] for r in reports if r["error"]), "no reason given")
                    raise AllLost(f"the all-reduce failed {failures} times at step {done} with no worker lost ({why}); "
                                  "raise pnn.DataParallel's timeout above the longest step")
            self._form_group()
            chunk = None

    def _sync(self, params: Params, state: Any) -> None:
        """Give every member the driver's params and state: the client sends them to one member, which
        broadcasts them to the others (the client's traffic does not grow with the workers). Later, when only
        plain numbers of the state changed (a learning-rate scale lowered by ``reduce_lr``), those alone."""
        fields = _changed_fields(self._state, state) if params is self._params else None
        if fields is not None:
            self._everyone("set_fields", fields)
        else:
            from ._allreduce_worker import skeleton

            host = (tree_map(_host, params), tree_map(_host, state))
            shape = skeleton(host)
            attempts = 0
            while True:
                first = sorted(self.actors)[0]
                try:
                    start(self.actors[first], "set_state", *host).result()
                except Exception as e:
                    if not is_lost(e):
                        raise
                    self._drop([first], "re-forming the all-reduce group")
                    self._form_group()
                    continue
                results, lost, errors = self._wait({w: start(a, "share_state", shape) for w, a in self.actors.items()})
                if errors:
                    raise errors[0]
                failed = [why for why in results.values() if why is not None]
                if not lost and not failed:
                    break
                if lost:
                    self._drop(lost, "re-forming the all-reduce group")
                else:
                    attempts += 1
                    if attempts >= _RETRIES:
                        raise AllLost(f"the workers could not share the params: {failed[0]}")
                self._form_group()
        self._params, self._state = params, state

    def _fetch(self) -> tuple[Params, Any]:
        """The params and optimizer state from the first member that answers (the replicas are identical)."""
        for w in sorted(self.actors):
            try:
                host_p, host_s = unpack(start(self.actors[w], "fetch").result())
            except Exception as e:
                if not is_lost(e):
                    raise
                continue
            self._params, self._state = tree_map(self._put, host_p), tree_map(self._put, host_s)
            return self._params, self._state
        raise AllLost("every worker of the cluster was lost")

    def _put(self, a: Any) -> Any:
        """A host array as an array of the params' library on their device (other leaves as they are)."""
        return self.xp.asarray(a, device=self.device) if isinstance(a, np.ndarray) else a

    def _history(self, report: dict[str, Any], state: Any) -> dict[str, list[float]]:
        """The driver's history with the chunk's completed epochs added (for ``FitInterrupted``)."""
        from ._driver import _epoch_lrs, _record

        history = {k: list(v) for k, v in self.loop.history.items()}
        k = len(report["epochs"])
        if k:
            count = getattr(state, "count", None)
            at = state._replace(count=int(count) - report["step"]) if count is not None else state
            lrs = _epoch_lrs(self.spec.optimizer, at, k, self.spe)
            for (t, c), lr in zip(report["epochs"], lrs, strict=True):
                _record(history, self.loop.epoch_loss(t), c, self.loop.source.n_labels, lr)
        return history

    def close(self) -> None:
        """Stop any member still running (an error left it running), drop the actors (their groups and the
        store close with them)."""
        if self._running:
            for actor in list(self.actors.values()):
                start(actor, "request_stop")
        super().close()


def _show(bar: Any, done: int) -> None:
    """Move the progress bar to ``done`` steps of the fit."""
    if done > bar.n:
        bar.update(done - bar.n)


def _loopback(address: str) -> bool:
    host = address.split("://")[-1].rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def _changed_fields(old: Any, new: Any) -> dict[str, Any] | None:
    """The fields of NamedTuple state ``new`` that differ from ``old``'s, when all of them are plain numbers
    (e.g. ``lr_scale``); None when anything else changed."""
    if old is None or type(old) is not type(new) or not hasattr(new, "_fields"):
        return None
    diff = {}
    for f in new._fields:
        a, b = getattr(old, f), getattr(new, f)
        if a is b:
            continue
        if not isinstance(b, (int, float)) or isinstance(b, bool):
            return None
        diff[f] = b
    return diff
