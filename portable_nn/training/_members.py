"""The all-reduce's members as the client sees them: calls to all, waiting, the group, the params.

:class:`MemberGroup` is the part of ``_allreduce.AllReduceRunner`` that talks
to the :class:`~._allreduce_worker.Member` actors: calling every member and
waiting for them (results, lost and hung workers, Ctrl-C and the progress bar
meanwhile), choosing the collective (NCCL or gloo), forming a process group,
dropping lost workers (their shards moved), giving the members the params and
optimizer state and fetching them back.
"""

from __future__ import annotations

import threading
import time
import warnings
from typing import Any

import numpy as np

from .._tree import tree_map
from ..backends import adapter_of, to_numpy
from ..layers.base import Params
from ._handoff import unpack
from ._shards import AllLost, ShardedRunner, is_lost, live, start

__all__ = ["RETRIES", "AllLost", "MemberGroup", "show"]

RETRIES = 3  # failed collectives (or group formations) in a row with no worker lost before fit gives up


def _host(a: Any) -> Any:
    return np.asarray(to_numpy(a)) if adapter_of(a) is not None else a


class MemberGroup(ShardedRunner):
    """Calls to the members and their process group (see the module docstring). Set by the subclass:
    ``timeout`` (seconds), ``exchange`` (``"gloo"``/``"nccl"``), ``generation``, ``grouped``, ``_params``,
    ``_state`` (what the members hold), ``_running`` (a ``run`` call is out)."""

    timeout: float
    exchange: str
    generation: int
    grouped: bool
    _params: Any
    _state: Any
    _running: bool

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
                if attempts >= RETRIES:
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
                    show(loop.bar, max(d for d, _ in seen.values()))
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
                    if attempts >= RETRIES:
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

    def close(self) -> None:
        """Stop any member still running (an error left it running), drop the actors (their groups and the
        store close with them)."""
        if self._running:
            for actor in list(self.actors.values()):
                start(actor, "request_stop")
        super().close()


def show(bar: Any, done: int) -> None:
    """Move the progress bar to ``done`` steps of the fit."""
    if done > bar.n:
        bar.update(done - bar.n)


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
