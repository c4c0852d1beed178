"""kNN label agreement: do a sample's nearest neighbours in the embedding space share its label?

A training-free signal for scans from embeddings (``--features``): with strong features,
an image whose neighbours mostly carry another label is likely mislabeled. Neighbours are
found once per scan by cosine similarity (L2-normalised features, blocked matrix product
and top-k in PyTorch), the sample itself excluded; the signal reads the given labels at
scoring time, so it needs no cross-validation.

For large N, each sample's neighbours are searched among a seeded random reference set of
at most :data:`KNN_REFERENCE` rows (exact search when N is at most that): the cost grows
as N x reference x D instead of N^2 x D, and label agreement with the nearest of a random
sample estimates the same local label mix, a little more coarsely.
"""

from __future__ import annotations

import numpy as np

from labelaudit.signals.base import Signal
from labelaudit.signals.evidence import Evidence

__all__ = ["KNN_K", "KNN_REFERENCE", "nearest_neighbours", "knn_agreement", "KnnAgreement"]

#: Neighbours per sample.
KNN_K = 10
#: Largest reference set searched (exact search below it).
KNN_REFERENCE = 20_000
#: Similarity entries per block of the search (bounds its temporary memory to ~256 MB).
_BLOCK_ENTRIES = 1 << 26


def nearest_neighbours(features: np.ndarray, k: int = KNN_K, *, reference: int = KNN_REFERENCE, seed: int = 0,
                       precision: str = "fp32") -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` most cosine-similar other rows.

    Parameters
    ----------
    features : numpy.ndarray of float, shape (N, D)
        Embeddings (any scale: rows are L2-normalised here).
    k : int
        Neighbours per row (fewer when the reference set is smaller than ``k + 1``).
    reference : int
        Largest number of candidate rows (a seeded random subset when N is larger).
    seed : int
        Seed of that subset.
    precision : {"fp32", "bf16"}
        Arithmetic of the similarity products (bf16: faster on CPUs that compute it natively).

    Returns
    -------
    neighbours : numpy.ndarray of int64, shape (N, k')
        Row numbers of the neighbours, most similar first; never the row itself.
    similarity : numpy.ndarray of float32, shape (N, k')
        Their cosine similarities, in [-1, 1].
    """
    import torch

    n = len(features)
    ref = _reference_rows(n, reference, seed)
    k = max(0, min(k, len(ref) - 1))
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    keys = _normalised(torch, features[ref]).to(dtype)
    slot = np.full(n, -1, np.int64)
    slot[ref] = np.arange(len(ref))
    block = max(1, _BLOCK_ENTRIES // max(1, len(ref)))
    neighbours, similarity = np.zeros((n, k), np.int64), np.zeros((n, k), np.float32)
    with torch.no_grad():
        for start in range(0, n, block):
            stop = min(n, start + block)
            sims = (_normalised(torch, features[start:stop]).to(dtype) @ keys.T).float()
            own = torch.as_tensor(slot[start:stop])
            rows = torch.nonzero(own >= 0).squeeze(1)
            sims[rows, own[rows]] = -float("inf")  # never one's own neighbour
            values, where = sims.topk(k, dim=1)
            neighbours[start:stop] = ref[where.numpy()]
            similarity[start:stop] = values.numpy()
    return neighbours, similarity


def _reference_rows(n: int, reference: int, seed: int) -> np.ndarray:
    if n <= reference:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=reference, replace=False))


def _normalised(torch, rows: np.ndarray):
    x = torch.as_tensor(np.asarray(rows, dtype=np.float32))
    return torch.nn.functional.normalize(x, dim=1)


def knn_agreement(neighbours: np.ndarray, similarity: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Similarity-weighted share of a sample's neighbours that carry its given label.

    Parameters
    ----------
    neighbours : numpy.ndarray of int, shape (N, k)
    similarity : numpy.ndarray of float, shape (N, k)
        Weights (negative similarities count as 0).
    labels : numpy.ndarray of int, shape (N,)
        Given labels.

    Returns
    -------
    numpy.ndarray of float, shape (N,)
        In [0, 1]; lower = more likely mislabeled. 0.5 when there are no neighbours.
    """
    if neighbours.shape[1] == 0:
        return np.full(len(labels), 0.5)
    weights = np.clip(similarity, 0, None).astype(np.float64) + 1e-6
    same = labels[neighbours] == labels[:, None]
    return (weights * same).sum(axis=1) / weights.sum(axis=1)


class KnnAgreement(Signal):
    """:func:`knn_agreement` in the input embedding space; lower = more likely mislabeled."""

    name = "knn_agreement"
    direction = -1
    description = ("similarity-weighted share of the 10 nearest neighbours (cosine, input embeddings, "
                   "the sample itself excluded) that carry the sample's given label")
    requires = ("knn_neighbours", "knn_similarity")

    def compute(self, evidence: Evidence) -> np.ndarray:
        found = {name: next(r.records[name] for r in evidence.results if name in r.records)
                 for name in self.requires}
        return knn_agreement(found["knn_neighbours"], found["knn_similarity"], evidence.labels)
