"""The NumPy backend: NumPy's own namespace on NumPy >= 2, ``array_api_compat.numpy`` before."""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

from ._adapter import Adapter, no_device
from ._backend import NUMPY_NS
from ._precision import ml_dtypes_bfloat16

__all__ = ["ADAPTER"]


class NumpyAdapter(Adapter):
    """Host arrays: one device, ``cpu``. (Subclass it for a backend that is NumPy under another name.)"""

    name = "numpy"
    module = "numpy"
    install_hint = "pip install numpy"

    def resolve(self, device: str | None) -> tuple[Any, Any]:
        if device not in (None, "cpu"):
            no_device(self.name, device, ["cpu"])
        return NUMPY_NS, "cpu"

    def owns(self, a: Any) -> bool:
        return isinstance(a, np.ndarray) or array_api_compat.is_numpy_array(a)

    def device_label(self, device: Any) -> str:
        return "cpu"

    def precision_dtype(self, xp: Any, name: str) -> Any:
        """float16 is NumPy's own; bfloat16 is ml_dtypes' (if installed: NumPy has none)."""
        return ml_dtypes_bfloat16() if name == "bfloat16" else super().precision_dtype(xp, name)


ADAPTER = NumpyAdapter()
