"""Gradient-boosted regression trees applied with numpy, their nodes from safetensors.

A binary gradient-boosted classifier is fitted with scikit-learn at training time
(``sklearn.ensemble.GradientBoostingClassifier``, log-loss) and shipped as flat node arrays, so
that run time needs neither scikit-learn (3D Slicer does not ship it) nor PyTorch:

* ``feature`` (int32), ``threshold`` (float64): the split of every node (``feature`` < 0: a leaf);
* ``left``, ``right`` (int32): the children of every node, as indices into the same arrays;
* ``value`` (float64): every node's output, already multiplied by the learning rate;
* ``roots`` (int32): the root node of each tree;
* ``baseline`` (float64, one value): the initial log-odds.

``logit(x) = baseline + sum over trees of the value of the leaf that x reaches``, going left where
``x[feature] <= threshold`` with x in float32 (scikit-learn's convention: the same decisions). Weights are verified by SHA-256 against
their card, as every model of this engine (:mod:`.weights`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import ModelError

ARRAYS = ("feature", "threshold", "left", "right", "value", "roots", "baseline")


class TreeEnsemble:
    """P(class 1 | x) = sigmoid(baseline + sum of the trees' leaf values)."""

    def __init__(self, arrays: dict, threshold: float = 0.5, card: dict | None = None):
        missing = [k for k in ARRAYS if k not in arrays]
        if missing:
            raise ModelError(f"tree model without {', '.join(missing)}. Fix: reinstall the model")
        self.feature = np.asarray(arrays["feature"], np.int64)
        self.split = np.asarray(arrays["threshold"], np.float64)
        self.left, self.right = (np.asarray(arrays[k], np.int64) for k in ("left", "right"))
        self.value = np.asarray(arrays["value"], np.float64)
        self.roots = np.asarray(arrays["roots"], np.int64)
        self.baseline = float(np.asarray(arrays["baseline"]).ravel()[0])
        self.threshold, self.card = float(threshold), card or {}
        n = len(self.feature)
        inner = np.flatnonzero(self.feature >= 0)
        children = np.concatenate([self.left[inner], self.right[inner]]) if n else np.zeros(0, np.int64)
        # every child after its parent (so every path ends at a leaf) and inside the arrays
        if not (len(self.split) == len(self.left) == len(self.right) == len(self.value) == n) or \
                np.any(children <= np.concatenate([inner, inner])) or np.any(children >= n) or \
                np.any((self.roots < 0) | (self.roots >= n)):
            raise ModelError("tree model with inconsistent node arrays. Fix: reinstall the model")

    @property
    def n_features(self) -> int:
        return int(self.card.get("n_features", self.feature.max() + 1))

    def logit(self, x: np.ndarray) -> np.ndarray:
        """The ensemble's log-odds of each row of *x* (features in the card's order)."""
        # scikit-learn's trees compare float32 features with their thresholds: the same here
        x = np.atleast_2d(np.asarray(x, np.float32)).astype(np.float64)
        rows = np.arange(len(x))
        node = np.repeat(self.roots[None, :], len(x), axis=0)  # (samples, trees)
        while True:
            inner = self.feature[node] >= 0
            if not inner.any():
                break
            f = np.where(inner, self.feature[node], 0)
            go_left = x[rows[:, None], f] <= self.split[node]
            node = np.where(inner, np.where(go_left, self.left[node], self.right[node]), node)
        return self.baseline + self.value[node].sum(axis=1)

    def probability(self, x: np.ndarray) -> np.ndarray:
        """P(class 1) of each row of *x*."""
        return 1.0 / (1.0 + np.exp(-self.logit(x)))

    @classmethod
    def read(cls, card_path: Path, task: str, features: tuple[str, ...], what: str):
        """Load from a card (``task``, ``features`` must match) and its verified safetensors."""
        from .weights import read_numpy_model

        card, state = read_numpy_model(card_path, task, features, what)
        return cls(state, float(card.get("threshold", 0.5)), card)


def fitted_trees(gbc) -> dict:
    """The node arrays (:data:`ARRAYS`) of a fitted binary ``sklearn`` GradientBoostingClassifier
    (log-loss), through its public ``estimators_`` / ``tree_`` attributes and ``init_``'s prior."""
    if gbc.estimators_.shape[1] != 1:
        raise ValueError("only a binary GradientBoostingClassifier can be exported")
    prior = float(gbc.init_.class_prior_[1])
    parts = {k: [] for k in ("feature", "threshold", "left", "right", "value")}
    roots, offset = [], 0
    for est in gbc.estimators_[:, 0]:
        t = est.tree_
        leaf = t.children_left < 0
        parts["feature"].append(np.where(leaf, -1, t.feature).astype(np.int32))
        parts["threshold"].append(np.where(leaf, 0.0, t.threshold).astype(np.float64))
        parts["left"].append(np.where(leaf, -1, t.children_left + offset).astype(np.int32))
        parts["right"].append(np.where(leaf, -1, t.children_right + offset).astype(np.int32))
        parts["value"].append((gbc.learning_rate * t.value[:, 0, 0]).astype(np.float64))
        roots.append(offset)
        offset += t.node_count
    out = {k: np.concatenate(v) for k, v in parts.items()}
    out["roots"] = np.asarray(roots, np.int32)
    out["baseline"] = np.asarray([np.log(prior / (1 - prior))], np.float64)
    return out
