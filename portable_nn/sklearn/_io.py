"""Save and load fitted estimators: safetensors for the arrays (``pnn.save``), JSON for everything else.

``save(estimator, path)`` makes the directory ``path`` with two files:

- ``params.safetensors`` and ``optimizer.safetensors``: the network's params
  and the optimizer state (``pnn.save``: never pickle; they load onto any
  backend and device, so ``partial_fit`` continues where it stopped);
- ``estimator.json``: the class, the hyperparameters, and the fitted attributes
  (``classes_``, ``loss_curve_``, ``n_iter_``...).

``load(path)`` rebuilds the estimator from those two files only: nothing in
them is executed or imported. Hyperparameters that are Python objects (the
generic wrappers' ``model``, ``loss`` and ``optimizer``) cannot go into
JSON: the file records their repr, and ``load`` needs them passed again
(``load(path, model=..., loss=...)``); the params must fit the model
(``pnn.load(..., like=...)`` checks every shape). A ``random_state`` that is
a ``RandomState`` is saved as None.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .. import __version__
from ..backends import Backend, get_backend
from ..io import load as pnn_load
from ..io import save as pnn_save
from . import _data

__all__ = ["Persist", "load", "save"]

FORMAT = "portable_nn.sklearn/1"
ARRAYS, STATE, CONFIG = "params.safetensors", "optimizer.safetensors", "estimator.json"
_FITTED = (  # plain fitted attributes, as JSON values
    "n_features_in_", "n_outputs_", "n_iter_", "t_", "loss_curve_", "best_loss_", "best_validation_score_",
    "validation_scores_", "out_activation_", "n_layers_", "backend_", "dtype_", "_no_improvement_count",
)


def _plain(value: Any) -> Any:
    """``value`` as JSON (NumPy scalars as Python ones), or raise TypeError."""
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    raise TypeError(type(value).__name__)


def _pairs(mapping: dict[Any, Any]) -> dict[str, Any]:
    """A dict hyperparameter (``class_weight``) as JSON that keeps its keys' types (JSON object keys
    are strings, so ``{0: 2.0}`` would come back as ``{"0": 2.0}``): ``{".pairs": [[key, value], ...]}``."""
    return {".pairs": [[_plain(k), _plain(v)] for k, v in mapping.items()]}


class Persist:
    """``est.save(path)`` and ``Estimator.load(path, backend=None, **objects)``."""

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write this fitted estimator to the directory ``path`` (see :func:`save`)."""
        save(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, backend: str | Backend | None = None, **objects: Any) -> Any:
        """Read an estimator of this class saved by :meth:`save` (see :func:`load`)."""
        est = load(path, backend=backend, **objects)
        if not isinstance(est, cls):
            raise ValueError(f"load: {os.fspath(path)!r} holds a {type(est).__name__}, not a {cls.__name__}.")
        return est


def save(estimator: Any, path: str | os.PathLike[str]) -> None:
    """Write a fitted estimator of this package to the directory ``path`` (created if needed).

    Raises:
        sklearn.exceptions.NotFittedError: the estimator is not fitted.
    """
    check_is_fitted(estimator)
    params, objects = {}, {}
    for name, value in estimator.get_params(deep=False).items():
        if name == "random_state" and not isinstance(value, (int, np.integer)):
            value = None
        try:
            params[name] = _pairs(value) if name == "class_weight" and isinstance(value, dict) else _plain(value)
        except TypeError:
            objects[name] = repr(value)
    fitted = {k: _plain(getattr(estimator, k)) for k in _FITTED if hasattr(estimator, k)}
    fitted["_input_key"], fitted["_features"] = list(estimator._input_key), list(estimator._features)
    if hasattr(estimator, "feature_names_in_"):
        fitted["feature_names_in_"] = [str(f) for f in estimator.feature_names_in_]
    if hasattr(estimator, "classes_"):
        fitted["classes_"] = {"values": _plain(estimator.classes_.tolist()), "dtype": estimator.classes_.dtype.str}
        fitted["y_type_"] = estimator._label_binarizer.y_type_
    config = {
        "format": FORMAT, "version": __version__, "class": type(estimator).__name__,
        "params": params, "objects": objects, "fitted": fitted, "model": repr(estimator.model_),
    }
    os.makedirs(path, exist_ok=True)
    pnn_save(os.path.join(path, ARRAYS), estimator.params_)
    pnn_save(os.path.join(path, STATE), estimator._opt_state)
    with open(os.path.join(path, CONFIG), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=1)
        f.write("\n")


def _classes() -> dict[str, type]:
    """The estimators ``load`` rebuilds, by name: this package's classifiers and regressors.

    They are the subclasses of :class:`Persist` that Python keeps track of (the
    package imports them all), so this module needs no import of them.
    """
    found, todo = {}, list(Persist.__subclasses__())
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.__module__.startswith(f"{__package__}.") and issubclass(cls, (ClassifierMixin, RegressorMixin)):
            found[cls.__name__] = cls
    return found


def load(path: str | os.PathLike[str], *, backend: str | Backend | None = None, **objects: Any) -> Any:
    """Read an estimator saved by :func:`save`, onto ``backend`` (default: the one it was trained on).

    Args:
        objects: the hyperparameters that are Python objects (the file names
            them under ``"objects"``), e.g. ``model=``, ``loss=``, ``optimizer=``.

    Raises:
        ValueError: not such a directory, an unknown format or class, a missing
            object, or params that do not fit the model (``CheckpointError``).
    """
    where = os.path.join(path, CONFIG)
    try:
        with open(where, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"load: cannot read {where!r} ({e}); pass a directory written by save().") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT or config.get("class") not in _classes():
        raise ValueError(f"load: {where!r} is not an estimator saved by portable_nn.sklearn.save ({FORMAT}).")
    missing = sorted(set(config["objects"]) - set(objects))
    unknown = sorted(set(objects) - set(config["objects"]))
    if missing or unknown:
        saved = ", ".join(f"{k}={v}" for k, v in config["objects"].items()) or "none"
        raise ValueError(
            f"load: pass the object hyperparameters again: missing {missing or 'none'}, not objects in the "
            f"file {unknown or 'none'} (saved: {saved})."
        )
    params = dict(config["params"], **objects)
    if isinstance(params.get("class_weight"), dict) and set(params["class_weight"]) == {".pairs"}:
        params["class_weight"] = {k: v for k, v in params["class_weight"][".pairs"]}
    if isinstance(params.get("hidden_layer_sizes"), list):
        params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
    est = _classes()[config["class"]](**params)
    _restore(est, config["fitted"], backend)
    if repr(est.model_) != config["model"]:
        raise ValueError(f"load: the model is {est.model_!r} but {config['model']} was saved; pass that model.")
    be = get_backend(est.backend_)
    est.params_ = pnn_load(os.path.join(path, ARRAYS), backend=be, like=est.params_)
    est._opt_state = pnn_load(os.path.join(path, STATE), backend=be)
    return est


def _restore(est: Any, fitted: dict[str, Any], backend: str | Backend | None) -> None:
    """Set the fitted attributes and build the model (with throwaway weights) on the chosen backend."""
    for k in _FITTED:
        if k in fitted:
            setattr(est, k, fitted[k])
    if "feature_names_in_" in fitted:
        est.feature_names_in_ = np.asarray(fitted["feature_names_in_"], dtype=object)
    if "classes_" in fitted:
        est.classes_ = np.asarray(fitted["classes_"]["values"], dtype=np.dtype(fitted["classes_"]["dtype"]))
        lb = LabelBinarizer()
        lb.classes_, lb.y_type_, lb.sparse_input_ = est.classes_, fitted["y_type_"], False
        est._label_binarizer = lb
    be = get_backend(est.backend_ if backend is None else backend)  # the saved one need not exist here
    key = tuple(fitted["_input_key"])
    est._input_key = key if _data.spec(be) == est.backend_ or key == _data.HOST else (be.name, be.device_label)
    est.backend_ = _data.spec(be)
    est._features = tuple(fitted["_features"])
    est.model_, est.params_ = est._build(est._features, est.n_outputs_, be, est.dtype_, check_random_state(0))
