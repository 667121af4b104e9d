"""Run the whole suite on one backend, chosen by --backend or PORTABLE_NN_TEST_BACKEND.

Values: numpy (default), numpy-readonly (every array the tests hand the library
is marked not writeable, so an in-place write raises), array_api_strict,
array_api_strict:device1, array_api_strict:no_float64 (float32 only), torch,
torch:cuda, jax, jax:gpu, cupy.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from typing import Any

# scikit-learn's array_api_dispatch (tests/test_sklearn.py) needs SciPy's array API mode, which SciPy
# reads once, when it is first imported: set it before any test module imports scipy or sklearn.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

# The Ctrl-C tests send SIGINT to this process and expect Python's own handler. A shell that starts a
# command in the background without job control (`cmd &` in a script, `nohup`) makes it ignore SIGINT,
# and Python keeps that: restore the handler an interactive run has.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

import numpy as np
import pytest

import portable_nn as pnn


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        default=os.environ.get("PORTABLE_NN_TEST_BACKEND", "numpy"),
        help="backend the suite runs on (see tests/conftest.py)",
    )


@dataclass(frozen=True)
class TestBackend:
    """A backend plus what the tests need to know about it."""

    spec: str
    be: pnn.Backend
    readonly: bool
    dtypes: tuple[str, ...]

    @property
    def float(self) -> str:
        """The widest float dtype this device supports (float64 unless it has none)."""
        return self.dtypes[-1]

    def asarray(self, data: Any, dtype: Any = None) -> Any:
        a = self.be.asarray(data, dtype=dtype)
        return _freeze(a) if self.readonly else a

    def init(self, model: pnn.Layer, seed: int = 0, dtype: str | None = None) -> Any:
        params = model.init(seed=seed, backend=self.be, dtype=dtype or self.float)
        return pnn.tree_map(_freeze, params) if self.readonly else params


def _freeze(a: Any) -> Any:
    if isinstance(a, np.ndarray):
        a.flags.writeable = False
    return a


@pytest.fixture(scope="session")
def tb(request: pytest.FixtureRequest) -> TestBackend:
    spec = request.config.getoption("--backend")
    readonly = spec == "numpy-readonly"
    name = "numpy" if readonly else spec
    try:
        be = pnn.get_backend(name)
    except pnn.BackendError as e:
        pytest.skip(f"backend {spec} unavailable: {e}")
    dtypes = tuple(d for d in ("float32", "float64") if _supports(be, d))
    return TestBackend(spec, be, readonly, dtypes)


def _supports(be: pnn.Backend, dtype: str) -> bool:
    try:
        be.dtype(dtype)
    except TypeError:
        return False
    return True


def pytest_report_header(config: pytest.Config) -> str:
    return f"portable_nn test backend: {config.getoption('--backend')}"


# --- Dask: one loopback cluster for tests/test_dask.py and tests/test_allreduce.py ---------------------------


@pytest.fixture(scope="session")
def dask_client(request: pytest.FixtureRequest) -> Any:
    """A client of a 2-worker loopback cluster, shared by the session (the cluster tests run on NumPy)."""
    if request.config.getoption("--backend") != "numpy":
        pytest.skip("the cluster tests run on the numpy backend (float64 parity)")
    distributed = pytest.importorskip("distributed")
    from ._dask_support import loopback_cluster

    cluster = loopback_cluster(2)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture
def deadline() -> Any:
    """Fail (not hang) a test that runs past 120 s."""
    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError("the Dask test ran past its 120 s bound")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(120)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
