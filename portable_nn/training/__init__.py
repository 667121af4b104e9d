"""Training: fit, predict, evaluate and one compiled or portable step.

One engine: ``fit`` checks its arguments into one settings object
(``_settings``), picks a data source (``_source``: in memory; ``_dask_data``:
Dask blocks) and the epoch driver (``_driver``) runs epochs through one small
runner interface (``_epoch``: the portable steps; ``_scan``: JAX's compiled
epochs; ``_allreduce``, ``_cluster``: a Dask cluster's workers), owning the history,
validation, early stopping, callbacks, checkpoints (``_checkpoint``), Ctrl-C
and the NaN policy once. One step (``_step``) serves every path.
"""

from __future__ import annotations

from .._errors import FitInterrupted
from ._evaluate import evaluate, predict
from ._fit import fit
from ._parallel import DataParallel
from ._step import TrainStep, compile_step

__all__ = ["DataParallel", "FitInterrupted", "TrainStep", "compile_step", "evaluate", "fit", "predict"]
