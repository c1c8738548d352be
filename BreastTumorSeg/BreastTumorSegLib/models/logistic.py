"""A standardisation + logistic regression applied with numpy, its weights from safetensors.

The small learned classifiers of the engine (the component filter of the false-positive
reduction, the per-breast malignancy model) are fitted with scikit-learn at training time and
shipped as four plain tensors (``mean``, ``scale``, ``coef``, ``intercept``) verified by SHA-256
against their card, so that run time needs neither scikit-learn nor PyTorch.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


class LogisticModel:
    """P(class 1 | x) = sigmoid(((x - mean) / scale) . coef + intercept)."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray, intercept: float,
                 threshold: float = 0.5, card: dict | None = None):
        self.mean, self.scale, self.coef = (np.asarray(v, np.float64) for v in (mean, scale, coef))
        self.intercept, self.threshold, self.card = float(intercept), float(threshold), card or {}

    def logit(self, x: np.ndarray) -> np.ndarray:
        z = (np.atleast_2d(np.asarray(x, np.float64)) - self.mean) / self.scale
        return z @ self.coef + self.intercept

    def probability(self, x: np.ndarray) -> np.ndarray:
        """P(class 1) of each row of *x* (features in the card's order)."""
        return 1.0 / (1.0 + np.exp(-self.logit(x)))

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Each feature's term of the logit, row by row (what the card's coefficients weigh)."""
        z = (np.atleast_2d(np.asarray(x, np.float64)) - self.mean) / self.scale
        return z * self.coef

    @classmethod
    def read(cls, card_path: Path, task: str, features: tuple[str, ...], what: str):
        """Load from a card (``task``, ``features`` must match) and its verified safetensors."""
        from .weights import read_numpy_model

        card, state = read_numpy_model(card_path, task, features, what)
        get = lambda k: np.asarray(state[k], np.float64)  # noqa: E731
        return cls(get("mean"), get("scale"), get("coef"), float(get("intercept")[0]),
                   float(card.get("threshold", 0.5)), card)


def fitted_state(scaler, lr) -> dict:
    """The four tensors of a fitted sklearn StandardScaler + LogisticRegression (numpy float64)."""
    return {"mean": np.asarray(scaler.mean_, np.float64), "scale": np.asarray(scaler.scale_, np.float64),
            "coef": np.asarray(lr.coef_[0], np.float64), "intercept": np.asarray([float(lr.intercept_[0])], np.float64)}
