"""Out-of-scope detection: how far a message's embedding lies from every intent the model knows.

The fine-tuned classifier always picks one of its intents, even for "will it rain tomorrow"; its
softmax is trained to be confident, not to say "none of these". So we look at the sentence
embedding that feeds the classifier head instead. Fitted on the train split, every intent k is a
Gaussian N(mean_k, shared covariance), and a message's score is its squared Mahalanobis distance
to the nearest intent mean (Lee et al. 2018; Podolskiy et al. 2021 for fine-tuned transformers
on intents). No out-of-scope examples are needed: the threshold is a quantile of the scores of
held-out *in-scope* messages.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

DETECTOR_FILE = "ood.npz"
METHOD = "mahalanobis"
# 97%: wrongly flagging a real support message costs a "sorry, I can only help with your orders,
# could you rephrase?" (and the router's low-confidence fallback already catches some of these);
# letting "what's the weather" through triggers a wrong support action. 3% of in-scope messages
# is the price we accept for that. Going further (99%) would also rest the threshold on only the
# top 1% of a few hundred validation scores, i.e. on a handful of messages.
DEFAULT_KEEP_RATE = 0.97


@dataclass(frozen=True, eq=False)
class OutOfScopeDetector:
    """Class-conditional Gaussians with one shared covariance over the classifier's embeddings."""

    means: np.ndarray  # (n_intents, hidden): one mean embedding per intent
    precision: np.ndarray  # (hidden, hidden): inverse of the shrunk, shared covariance
    shrinkage: float  # Ledoit-Wolf weight of the scaled identity in that covariance
    threshold: float = math.inf  # scores above it are out of scope; inf until calibrated
    keep_rate: float = 1.0  # target share of calibration messages kept in scope
    calibration_keep_rate: float = 1.0  # the share actually kept (ties, small sets)
    n_calibration: int = 0

    @classmethod
    def fit(cls, embeddings: np.ndarray, labels: np.ndarray) -> OutOfScopeDetector:
        """Fit on in-scope `embeddings` (n, hidden) with intent ids `labels` (n,); not yet calibrated."""
        embeddings = np.asarray(embeddings, dtype=np.float64)
        labels = np.asarray(labels)
        if embeddings.ndim != 2 or len(embeddings) != len(labels) or not len(labels):
            raise ValueError(f"need (n, hidden) embeddings and n labels, got {embeddings.shape}, {labels.shape}")
        intents = np.unique(labels)
        means = np.stack([embeddings[labels == k].mean(axis=0) for k in intents])  # (n_intents, hidden)
        # Residuals from each message's own intent mean: the spread the intents share.
        residuals = embeddings - means[np.searchsorted(intents, labels)]  # (n, hidden)
        covariance, shrinkage = _ledoit_wolf(residuals)
        # pinv: a singular covariance (all residuals zero) gives a finite, if useless, precision.
        precision = np.linalg.pinv(covariance, hermitian=True)
        return cls(means=means, precision=precision, shrinkage=shrinkage)

    def score(self, embeddings: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance to the nearest intent mean, (n,); higher = more out of scope."""
        x = np.atleast_2d(np.asarray(embeddings, dtype=np.float64))  # (n, hidden)
        # |x - m|^2_P = x'Px - 2 x'Pm + m'Pm for every (message, intent) pair, without an
        # (n, n_intents, hidden) difference tensor. The one large product runs in float32.
        projected = (x.astype(np.float32) @ self._precision32).astype(np.float64)  # (n, hidden)
        own = np.sum(projected * x, axis=1)  # (n,)
        cross = projected @ self.means.T  # (n, n_intents)
        distances = own[:, None] - 2.0 * cross + self._means_term[None, :]  # (n, n_intents)
        return np.maximum(distances.min(axis=1), 0.0)  # rounding can dip just below 0

    @cached_property
    def _precision32(self) -> np.ndarray:
        """The precision matrix in float32: half the bytes of a 384 x 384 float64 matrix (1.2 MB),
        which a lone message reads from main memory after the encoder's weights pushed it out of
        the caches (~0.14 ms in float64)."""
        return self.precision.astype(np.float32)

    @cached_property
    def _means_term(self) -> np.ndarray:
        """m'Pm for every intent mean, (n_intents,): the same for every message, so computed once."""
        return np.sum((self.means @ self.precision) * self.means, axis=1)

    def calibrate(self, embeddings: np.ndarray, keep_rate: float = DEFAULT_KEEP_RATE) -> OutOfScopeDetector:
        """A copy whose threshold keeps `keep_rate` of these in-scope (held-out) messages in scope."""
        scores = self.score(embeddings)
        threshold = keep_threshold(scores, keep_rate)
        kept = float(np.mean(scores <= threshold))
        return dataclasses.replace(
            self, threshold=threshold, keep_rate=keep_rate, calibration_keep_rate=kept, n_calibration=len(scores)
        )

    def is_out_of_scope(self, scores: np.ndarray) -> np.ndarray:
        """Which of these scores (from `score`) lie beyond the calibrated threshold, (n,) bool."""
        return np.asarray(scores) > self.threshold

    def summary(self) -> dict[str, Any]:
        """The numbers worth reading in the model's metadata JSON (the arrays stay in the file)."""
        return {
            "method": METHOD,
            "threshold": self.threshold,
            "keep_rate": self.keep_rate,
            "calibration_keep_rate": round(self.calibration_keep_rate, 4),
            "n_calibration": self.n_calibration,
            "shrinkage": round(self.shrinkage, 4),
            "n_intents": int(self.means.shape[0]),
            "hidden_size": int(self.means.shape[1]),
        }

    def save(self, directory: str | Path, name: str = DETECTOR_FILE) -> Path:
        """Write `name` (`ood.npz`) into `directory` (plain arrays: loading never unpickles)."""
        path = Path(directory) / name
        fields = {f.name: np.asarray(getattr(self, f.name)) for f in dataclasses.fields(self)}
        with path.open("wb") as handle:  # a handle, so numpy does not append a second ".npz"
            np.savez(handle, allow_pickle=False, method=np.asarray(METHOD), **fields)
        return path

    @classmethod
    def load(cls, directory: str | Path, name: str = DETECTOR_FILE) -> OutOfScopeDetector:
        """Read the file `save` wrote into `directory` under `name`."""
        path = Path(directory) / name
        with np.load(path, allow_pickle=False) as saved:
            if str(saved["method"]) != METHOD:
                raise ValueError(f"{path}: unknown out-of-scope method {str(saved['method'])!r}")
            arrays = {f.name: saved[f.name] for f in dataclasses.fields(cls)}
        return cls(
            means=arrays["means"],
            precision=arrays["precision"],
            shrinkage=float(arrays["shrinkage"]),
            threshold=float(arrays["threshold"]),
            keep_rate=float(arrays["keep_rate"]),
            calibration_keep_rate=float(arrays["calibration_keep_rate"]),
            n_calibration=int(arrays["n_calibration"]),
        )


def keep_threshold(scores: Sequence[float] | np.ndarray, keep_rate: float) -> float:
    """The smallest score that at least ceil(keep_rate * n) of these in-scope `scores` do not exceed."""
    if not 0.0 < keep_rate <= 1.0:
        raise ValueError(f"keep rate must be in (0, 1], got {keep_rate}")
    ordered = np.sort(np.asarray(scores, dtype=np.float64))
    if not len(ordered):
        raise ValueError("no messages to calibrate the out-of-scope threshold on")
    return float(ordered[math.ceil(keep_rate * len(ordered)) - 1])


def _ledoit_wolf(residuals: np.ndarray) -> tuple[np.ndarray, float]:
    """The covariance of zero-mean `residuals` (n, hidden), shrunk towards a scaled identity.

    With 384 dimensions and a few thousand (or, in tests, a few dozen) messages the plain
    estimate is noisy or singular, and its inverse blows the noise up. Ledoit & Wolf (2004) pick
    the mix that minimises the expected error: shrinkage = (variance of the estimate) / (its
    squared distance from the target), both in Frobenius norm.
    """
    n, hidden = residuals.shape
    covariance = residuals.T @ residuals / n  # (hidden, hidden)
    target = np.trace(covariance) / hidden * np.eye(hidden)  # same total variance, no correlations
    distance = float(np.sum((covariance - target) ** 2))
    squared_norms = np.einsum("nh,nh->n", residuals, residuals)  # (n,)
    # mean_i |x_i x_i' - S|_F^2 / n, using sum_i x_i'Sx_i = n |S|_F^2
    variance = float(np.mean(squared_norms**2) - np.sum(covariance**2)) / n
    shrinkage = 1.0 if distance == 0.0 else min(max(variance / distance, 0.0), 1.0)
    return (1.0 - shrinkage) * covariance + shrinkage * target, shrinkage
