"""Flip-consistency signals: the mirror image is a view the model never trains on.

A memorised wrong label does not carry over to the mirror, so the mirror's loss and the
disagreement between image and mirror point at wrong labels. The records these signals
need exist only with flips on; with ``--no-flip`` the signals are absent, not faked.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from labelaudit.signals.base import InSampleSignal, OutOfSampleSignal

__all__ = ["FlipLossIn", "FlipLossGapIn", "FlipAgreeIn", "OosFlipSelfConfidence", "FlipAgreeOos",
           "FlipLossGapOos"]

_EPS = 1e-7  # keeps log(0) finite in the out-of-sample losses


class FlipLossIn(InSampleSignal):
    """In-sample loss of the mirror over the late epochs; higher = more likely mislabeled."""

    name = "flip_loss_in"
    direction = +1
    description = "in-sample loss of the never-trained-on mirror image over the late epochs (resists memorisation)"
    requires = ("view_flip_losses",)

    def per_fold(self, records: Mapping[str, np.ndarray]) -> np.ndarray:
        return records["view_flip_losses"].mean(axis=0)


class FlipLossGapIn(InSampleSignal):
    """In-sample loss of the mirror minus that of the image; higher = more likely mislabeled."""

    name = "flip_loss_gap_in"
    direction = +1
    description = "in-sample loss of the mirror minus loss of the image, late epochs"
    requires = ("view_losses", "view_flip_losses")

    def per_fold(self, records: Mapping[str, np.ndarray]) -> np.ndarray:
        return (records["view_flip_losses"] - records["view_losses"]).mean(axis=0)


class FlipAgreeIn(InSampleSignal):
    """Fraction of late epochs where image and mirror get the same class; lower = more likely mislabeled."""

    name = "flip_agree_in"
    direction = -1
    description = "fraction of late epochs where image and mirror get the same class"
    requires = ("view_flip_agree",)

    def per_fold(self, records: Mapping[str, np.ndarray]) -> np.ndarray:
        return records["view_flip_agree"].mean(axis=0)


class OosFlipSelfConfidence(OutOfSampleSignal):
    """Out-of-sample probability of the given label for the mirror; lower = more likely mislabeled."""

    name = "oos_flip_self_confidence"
    direction = -1
    description = "out-of-sample probability of the given label for the mirror"
    requires = ("holdout_probs_flip",)

    def per_sample(self, held_out: Mapping[str, np.ndarray], labels: np.ndarray) -> np.ndarray:
        return held_out["holdout_probs_flip"][np.arange(len(labels)), labels]


class FlipAgreeOos(OutOfSampleSignal):
    """1.0 if the held-out image and its mirror get the same class; lower = more likely mislabeled."""

    name = "flip_agree_oos"
    direction = -1
    description = "1 if the held-out image and its mirror get the same predicted class"
    requires = ("holdout_probs", "holdout_probs_flip")

    def per_sample(self, held_out: Mapping[str, np.ndarray], labels: np.ndarray) -> np.ndarray:
        return (held_out["holdout_probs"].argmax(1) == held_out["holdout_probs_flip"].argmax(1)).astype(float)


class FlipLossGapOos(OutOfSampleSignal):
    """Out-of-sample loss of the mirror minus that of the image; higher = more likely mislabeled."""

    name = "flip_loss_gap_oos"
    direction = +1
    description = "out-of-sample loss of the mirror minus loss of the image"
    requires = ("holdout_probs", "holdout_probs_flip")

    def per_sample(self, held_out: Mapping[str, np.ndarray], labels: np.ndarray) -> np.ndarray:
        rows = np.arange(len(labels))
        loss = -np.log(held_out["holdout_probs"][rows, labels] + _EPS)
        flip_loss = -np.log(held_out["holdout_probs_flip"][rows, labels] + _EPS)
        return flip_loss - loss
