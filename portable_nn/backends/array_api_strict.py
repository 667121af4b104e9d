"""The array-api-strict backend: the portability lint, with fake devices (``device1``, ``no_float64``)."""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

from ._adapter import Adapter, no_device

__all__ = ["ADAPTER"]


class StrictAdapter(Adapter):
    """``array_api_strict``: exactly the standard, with devices ``CPU_DEVICE``, ``device1``, ``no_float64``..."""

    name = "array_api_strict"
    module = "array_api_strict"
    install_hint = "pip install array-api-strict"

    def resolve(self, device: str | None) -> tuple[Any, Any]:
        lib = self.load()
        names = [d._device for d in lib.__array_namespace_info__().devices()]
        dev = device or "CPU_DEVICE"
        if dev not in names:
            no_device(self.name, dev, names)
        return lib, lib.Device(dev)

    def owns(self, a: Any) -> bool:
        get_namespace = getattr(a, "__array_namespace__", None)
        return get_namespace is not None and bool(array_api_compat.is_array_api_strict_namespace(get_namespace()))

    def to_numpy(self, a: Any) -> np.ndarray:
        import array_api_strict

        return np.asarray(array_api_compat.to_device(a, array_api_strict.Device("CPU_DEVICE")))

    def device_label(self, device: Any) -> str:
        return str(getattr(device, "_device", device))


ADAPTER = StrictAdapter()
