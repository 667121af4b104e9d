"""Targets and predictions: classification (binary, multiclass, multilabel) and regression (one or more outputs).

Classifiers keep scikit-learn's conventions: ``classes_`` holds the sorted
labels (strings, integers...), ``predict`` returns labels of ``classes_``
(multilabel: a 0/1 integer matrix), ``predict_proba`` one column per class.
The network outputs logits: softmax over the classes (multiclass), or a
logistic output per label (binary with one output, as scikit-learn's MLP,
and multilabel). The generic wrapper always uses softmax and trains on class
indices (the convention of ``pnn.losses.softmax_cross_entropy``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import (
    _check_partial_fit_first_call,
    check_classification_targets,
    unique_labels,
)
from sklearn.utils.validation import column_or_1d

from ..backends import get_backend, namespace
from ..layers.activations import Softmax, sigmoid
from . import _data
from ._base import NeuralNetBase

__all__ = ["CLASS_WEIGHT_DOC", "ClassifierPart", "RegressorPart"]

CLASS_WEIGHT_DOC = """
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes, ``{class_label: weight}`` ("balanced": ``n_samples / (n_classes *
        counts)``, the counts weighted by ``sample_weight``). Each row's loss is weighted by its class's
        weight times its sample weight. Not for multilabel targets; "balanced" not with partial_fit."""
"""``class_weight`` in the classifiers' numpydoc Parameters."""


class ClassifierPart(NeuralNetBase):
    """``classes_``, target encoding, ``predict``, ``predict_proba`` and ``predict_log_proba``."""

    _y_options: dict[str, Any] = {"multi_output": True}
    _class_indices = False  # True: train on class indices with softmax over every class (the generic wrapper)
    class_weight: Any

    def _encode(self, y: np.ndarray, incremental: bool) -> tuple[np.ndarray, np.ndarray, Any]:
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or not (self.warm_start or incremental):
            check_classification_targets(y)
            self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start and not incremental:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in the previous call "
                        f"to fit. Previously got {self.classes_}, `y` has {classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. "
                                 f"'y' has {classes}.")
        if len(self.classes_) < 2 and self._label_binarizer.y_type_ != "multilabel-indicator":
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes to train; got 1 class "
                f"({self.classes_[0]!r}). Pass data with two or more classes (partial_fit: classes=...)."
            )
        kind = self._label_binarizer.y_type_
        if self._class_indices:
            if kind == "multilabel-indicator":
                raise ValueError(f"{type(self).__name__} does not support multilabel targets; use MLPClassifier.")
            self.out_activation_ = "softmax"
            labels = np.searchsorted(self.classes_, y).astype(np.int64)
            return labels, y, labels
        self.out_activation_ = "softmax" if kind == "multiclass" else "logistic"
        T = self._label_binarizer.transform(y).astype(np.float64)
        return T, y, T if T.shape[1] == 1 else None  # scikit-learn stratifies binary targets only

    def _n_model_outputs(self, T: np.ndarray) -> int:
        return len(self.classes_) if self._class_indices else int(T.shape[1])

    def _multilabel(self) -> bool:
        return bool(self._label_binarizer.y_type_ == "multilabel-indicator")

    def _indices(self, out: Any) -> Any:
        """Predicted class indices (multilabel: the 0/1 matrix) from the logits, on their device."""
        xp = namespace(out)
        if self.out_activation_ == "softmax":
            return xp.argmax(out, axis=1)
        return xp.astype(out > 0, xp.int64) if self._multilabel() else xp.astype(out[:, 0] > 0, xp.int64)

    def _class_factors(self, sample_weight: Any, y: np.ndarray, incremental: bool) -> np.ndarray | None:
        """``class_weight`` (scikit-learn's meaning, ``compute_class_weight``; "balanced" counts the rows
        by their sample weights) as factors of each row's sample weight, as ``LogisticRegression`` combines them."""
        if self.class_weight is None:
            return None
        name = type(self).__name__
        if self._multilabel():
            raise ValueError(
                f"{name}: class_weight is not supported for multilabel targets (a row has several labels, so "
                "no one class weight); weigh the rows with sample_weight instead."
            )
        if incremental and self.class_weight == "balanced":
            raise ValueError(
                f"{name}: class_weight='balanced' is not supported for partial_fit (one batch does not show the "
                "class frequencies). Compute them once with sklearn.utils.class_weight.compute_class_weight("
                "'balanced', classes=classes, y=y) on enough of the training targets and pass the resulting "
                "weights as a dict, class_weight=dict(zip(classes, weights))."
            )
        host_w = None if sample_weight is None else _data.host(sample_weight)
        with np.errstate(divide="ignore"):
            per_class = np.asarray(compute_class_weight(self.class_weight, classes=self.classes_, y=y,
                                                        sample_weight=host_w), dtype=np.float64)
        if not np.all(np.isfinite(per_class)):
            empty = self.classes_[~np.isfinite(per_class)].tolist()
            raise ValueError(
                f"{name}: class_weight='balanced' cannot weigh the classes {empty}: their rows have a total "
                "sample weight of 0. Give them weight, or drop them from y."
            )
        return per_class[np.searchsorted(self.classes_, y)]

    def _val_score(self, y_true: np.ndarray, out: Any, sample_weight: np.ndarray | None) -> float:
        idx = _data.host(self._indices(out))
        return float(accuracy_score(y_true, idx if self._multilabel() else self.classes_[idx],
                                    sample_weight=sample_weight))

    def predict(self, X: Any) -> Any:
        """Predicted labels ``(n,)`` from ``classes_`` (multilabel: a 0/1 matrix ``(n, labels)``)."""
        out, key, _ = self._outputs(X, "predict")
        idx = _data.to_output(self._indices(out), key)
        if self._multilabel():
            return idx
        if key == _data.HOST or self.classes_.dtype.kind not in "biuf":
            return self.classes_[_data.host(idx)]  # string labels stay NumPy
        be = get_backend(*key)
        return be.xp.take(be.asarray(self.classes_), idx, axis=0)

    def predict_proba(self, X: Any) -> Any:
        """Class probabilities ``(n, classes)`` (multilabel: one probability per label), rows in ``classes_`` order."""
        out, key, dtype = self._outputs(X, "predict_proba")
        return _data.to_output(self._proba(out), key, dtype)

    def predict_log_proba(self, X: Any) -> Any:
        """The log of :meth:`predict_proba`."""
        out, key, dtype = self._outputs(X, "predict_log_proba")
        P = self._proba(out)
        return _data.to_output(namespace(P).log(P), key, dtype)

    def _proba(self, out: Any) -> Any:
        if self.out_activation_ == "softmax":
            return Softmax()({}, out)
        xp = namespace(out)
        p = sigmoid(out)
        return p if self._multilabel() else xp.concat([1.0 - p, p], axis=1)

    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None, classes: Any = None) -> Any:
        """One epoch over ``X``, ``y`` (rows weighted by ``sample_weight``), continuing the optimizer's
        state. The first call needs ``classes``.

        Labels outside ``classes_`` raise ValueError.
        """
        if classes is not None:  # classes_ is host data, as fit's (a device array, e.g. under dispatch, broke the checks)
            classes = _data.host(classes)
        if _check_partial_fit_first_call(self, classes):
            target = y if _data.host(y).ndim == 2 and _data.host(y).shape[1] > 1 else classes
            self._label_binarizer = LabelBinarizer().fit(target)
        return self._fit(X, y, sample_weight, incremental=True)


class RegressorPart(NeuralNetBase):
    """Float targets ``(n,)`` or ``(n, outputs)``; ``predict`` returns the same shape."""

    _y_options: dict[str, Any] = {"multi_output": True, "y_numeric": True}

    def _encode(self, y: np.ndarray, incremental: bool) -> tuple[np.ndarray, np.ndarray, Any]:
        T = np.asarray(y, dtype=np.float64)
        T = T.reshape(-1, 1) if T.ndim == 1 else T
        self.out_activation_ = "identity"
        return T, T, None

    def _n_model_outputs(self, T: np.ndarray) -> int:
        return int(T.shape[1])

    def _val_score(self, y_true: np.ndarray, out: Any, sample_weight: np.ndarray | None) -> float:
        pred = _data.host(out)
        return float(r2_score(y_true, pred[:, 0] if pred.shape[1] == 1 else pred, sample_weight=sample_weight))

    def predict(self, X: Any) -> Any:
        """Predictions ``(n,)`` for one output, ``(n, outputs)`` for several."""
        out, key, dtype = self._outputs(X, "predict")
        return _data.to_output(out[:, 0] if self.n_outputs_ == 1 else out, key, dtype)

    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> Any:
        """One epoch over ``X``, ``y`` (rows weighted by ``sample_weight``), continuing the optimizer's state."""
        return self._fit(X, y, sample_weight, incremental=True)
