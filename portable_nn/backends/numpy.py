"""The NumPy backend: NumPy's own namespace on NumPy >= 2, ``array_api_compat.numpy`` before."""

from __future__ import annotations

from typing import Any

import array_api_compat.numpy
import numpy as np

from ._adapter import Adapter, no_device

__all__ = ["ADAPTER", "NUMPY_IS_ARRAY_API", "NUMPY_NS"]

# NumPy >= 2 implements the standard itself; calling it directly avoids the
# ~1-2 us a call that array_api_compat's wrapper costs on tiny arrays.
NUMPY_IS_ARRAY_API = hasattr(np, "astype") and hasattr(np, "__array_namespace_info__")
NUMPY_NS: Any = np if NUMPY_IS_ARRAY_API else array_api_compat.numpy  # type: ignore[attr-defined]


class NumpyAdapter(Adapter):
    """Host arrays: one device, ``cpu``. (Subclass it for a backend that is NumPy under another name.)"""

    name = "numpy"
    module = "numpy"
    install_hint = "pip install numpy"

    def make(self, device: str | None) -> Any:
        from ._backend import Backend

        if device not in (None, "cpu"):
            no_device(self.name, device, ["cpu"])
        return Backend(self.name, NUMPY_NS, "cpu")

    def owns(self, a: Any) -> bool:
        return isinstance(a, np.ndarray) or array_api_compat.is_numpy_array(a)

    def device_label(self, device: Any) -> str:
        return "cpu"


ADAPTER = NumpyAdapter()
