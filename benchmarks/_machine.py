"""The machine a case runs on: BLAS threads, installed versions, memory (RSS), and whether other
processes kept the cores busy meanwhile."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from typing import Any

__all__ = [
    "BUSY_CORES",
    "LoadMeter",
    "RssPerEpoch",
    "blas_threads",
    "busy",
    "current_rss_mib",
    "installed_versions",
    "load_note",
    "peak_rss_mib",
    "threadpools",
]


def threadpools() -> list[dict[str, Any]] | None:
    """The native thread pools loaded in this process (BLAS, OpenMP), per threadpoolctl.

    Returns:
        One dict per pool (``user_api``, ``internal_api``, ``num_threads``,
        ``version``, ``filepath``), or None when threadpoolctl is not installed.
    """
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    keys = (
        "user_api",
        "internal_api",
        "num_threads",
        "version",
        "threading_layer",
        "architecture",
        "filepath",
    )
    return [{k: info[k] for k in keys if k in info} for info in threadpool_info()]


def blas_threads() -> tuple[int, str]:
    """Threads NumPy's BLAS uses, and where that number came from.

    Asks threadpoolctl when installed (preferring the BLAS that NumPy loaded),
    else reads ``OPENBLAS_NUM_THREADS``/``MKL_NUM_THREADS``/``OMP_NUM_THREADS``,
    else falls back to ``os.cpu_count()``.

    Returns:
        ``(threads, source)``, source e.g. ``"threadpoolctl (openblas)"``.
    """
    import numpy  # noqa: F401  (load NumPy's BLAS so threadpoolctl can see it)

    pools = threadpools()
    if pools:
        blas = [p for p in pools if p.get("user_api") == "blas"]
        mine = [p for p in blas if "numpy" in str(p.get("filepath", ""))] or blas
        if mine:
            return int(mine[0]["num_threads"]), f"threadpoolctl ({mine[0].get('internal_api', 'blas')})"
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) >= 1:
            return int(value), var
    return os.cpu_count() or 1, "os.cpu_count()"


def installed_versions(distributions: Iterable[str]) -> dict[str, str]:
    """Versions of installed distributions (e.g. ``"torch"``, ``"scikit-learn"``), read without importing them."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in distributions:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def current_rss_mib() -> float | None:
    """Resident set size now, from ``/proc/self/statm`` (Linux); None elsewhere."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float | None:
    """Peak resident set size of this process so far (``ru_maxrss``; KiB on Linux, bytes on macOS)."""
    try:
        import resource
    except ImportError:
        return None

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _busy_cpu_seconds() -> float | None:
    """CPU seconds all processes spent busy since boot, from ``/proc/stat`` (Linux); None elsewhere."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(x) for x in fields[1:]]
    busy = sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)  # minus idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


class LoadMeter:
    """How busy the rest of the machine was while a case ran: other processes' CPU use, in cores.

    ``others_cores`` = (all busy CPU time - this process's CPU time) / wall time.
    On a 2-core machine a value near 1 means another program held a whole core.
    """

    def __init__(self) -> None:
        self._wall = time.perf_counter()
        self._busy = _busy_cpu_seconds()
        self._own = _own_cpu_seconds()
        self._load = os.getloadavg() if hasattr(os, "getloadavg") else None

    def report(self) -> dict[str, Any]:
        wall = time.perf_counter() - self._wall
        busy, own = _busy_cpu_seconds(), _own_cpu_seconds()
        out: dict[str, Any] = {"wall_s": wall, "loadavg_start": self._load}
        out["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
        out["own_cpu_cores"] = (own - self._own) / wall if wall > 0 else None
        if busy is not None and self._busy is not None and wall > 0:
            out["others_cpu_cores"] = max(0.0, (busy - self._busy) - (own - self._own)) / wall
        else:
            out["others_cpu_cores"] = None
        return out


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


BUSY_CORES = 0.2  # other processes using more than this many cores on average make timings suspect


def busy(load: dict[str, Any]) -> bool:
    """True when other processes used more than :data:`BUSY_CORES` cores while the case ran."""
    others = load.get("others_cpu_cores")
    return others is not None and others > BUSY_CORES


def load_note(load: dict[str, Any]) -> str:
    """One line for a case's notes: how much CPU other programs used meanwhile."""
    others = load.get("others_cpu_cores")
    la = load.get("loadavg_end")
    parts = []
    if others is not None:
        parts.append(f"other processes used {others:.2f} of {os.cpu_count()} cores on average")
    if la:
        parts.append(f"1-min load average {la[0]:.2f}")
    text = "machine load meanwhile: " + ", ".join(parts) if parts else "machine load: unknown"
    if busy(load):
        text += (
            "  <-- BUSY: threads that wait on each other (BLAS, OpenMP) stall when a core is taken, "
            "so these times and ratios are unreliable"
        )
    return text


class RssPerEpoch:
    """A ``fit`` callback reading the RSS (MiB) after each epoch into ``rss``."""

    def __init__(self) -> None:
        self.rss: list[float] = []

    def on_epoch_end(self, epoch: int, history: Any, params: Any) -> None:
        rss = current_rss_mib()
        if rss is not None:
            self.rss.append(rss)
