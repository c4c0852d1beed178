"""Several annotators per image: consensus labels and annotator quality (arrays in, arrays out).

:func:`majority_vote` gives the provisional labels the folds train on;
:func:`estimate_consensus` then weighs every annotation against the folds' held-out
probabilities; :func:`annotator_stats` describes each annotator.
"""

from labelaudit.consensus.estimate import (
    ConsensusResult, annotator_stats, estimate_consensus, majority_vote, vote_matrix,
)

__all__ = ["ConsensusResult", "annotator_stats", "estimate_consensus", "majority_vote", "vote_matrix"]
