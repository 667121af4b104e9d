"""The CuPy backend (``array_api_compat.cupy``) on ``cuda:N``: usable only where a CUDA device is."""

from __future__ import annotations

import importlib.util
from typing import Any

import array_api_compat
import numpy as np

from ._adapter import Adapter, no_device
from ._precision import ml_dtypes_bfloat16

__all__ = ["ADAPTER", "cuda_device_count"]


def cuda_device_count() -> int:
    """CUDA devices CuPy can use here (0 without CuPy, a driver or a device)."""
    if importlib.util.find_spec("cupy") is None:
        return 0
    try:
        import cupy

        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # no driver, no device, broken install: not usable
        return 0


class CupyAdapter(Adapter):
    """CuPy arrays on ``cuda:N``."""

    name = "cupy"
    module = "cupy"
    install_hint = "pip install 'portable_nn[cupy]' (cupy-cuda12x; needs an NVIDIA GPU and driver)"

    def available(self) -> bool:
        return cuda_device_count() > 0

    def resolve(self, device: str | None) -> tuple[Any, Any]:
        lib = self.load()
        import array_api_compat.cupy as cupy_xp

        count = cuda_device_count()
        digits = (device or "cuda:0").rpartition(":")[2] or "0"
        if not digits.isdigit() or int(digits) >= count:
            no_device(self.name, device or "cuda:0", [f"cuda:{i}" for i in range(count)])
        return cupy_xp, lib.cuda.Device(int(digits))

    def owns(self, a: Any) -> bool:
        return bool(array_api_compat.is_cupy_array(a))

    def to_numpy(self, a: Any) -> np.ndarray:
        return a.get()  # type: ignore[no-any-return]

    def is_gpu(self, device: Any) -> bool:
        return True

    def synchronize(self, device: Any, arrays: tuple[Any, ...]) -> None:
        import cupy

        cupy.cuda.get_current_stream().synchronize()

    def device_label(self, device: Any) -> str:
        return f"cuda:{device.id}"

    def precision_dtype(self, xp: Any, name: str) -> Any:
        """float16 is CuPy's own; bfloat16, where CuPy has none, ml_dtypes' (experimental: the probe decides)."""
        if name == "bfloat16" and getattr(xp, name, None) is None:
            return ml_dtypes_bfloat16("CuPy")
        return super().precision_dtype(xp, name)

    def describe_device(self, device: Any) -> str:
        import cupy

        name = cupy.cuda.runtime.getDeviceProperties(device.id)["name"]
        return f"cuda:{device.id} ({name.decode() if isinstance(name, bytes) else name})"


ADAPTER = CupyAdapter()
