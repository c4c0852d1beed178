"""The review domain: the actions and what they mean, the decisions log (append, undo,
history, request ids), the decision in force, and the one writer of the database.

``samples_with_decisions(conn)`` -- every sample with its decision in force, as a
DataFrame -- is what the export reads.
"""

from labelaudit.review.actions import ACTION_TEXT, ACTIONS, IN_FORCE_ACTIONS, LABEL_ACTIONS, Action, resolve
from labelaudit.review.database import ReviewDatabase
from labelaudit.review.decisions import (
    decision_history,
    record_decision,
    record_decisions,
    samples_with_decisions,
    undo_last_decision,
)
from labelaudit.review.schema import SAMPLES_WITH_DECISIONS, in_force

__all__ = [
    "Action", "ACTIONS", "IN_FORCE_ACTIONS", "LABEL_ACTIONS", "ACTION_TEXT", "resolve", "ReviewDatabase",
    "record_decision", "record_decisions", "undo_last_decision", "decision_history", "samples_with_decisions",
    "SAMPLES_WITH_DECISIONS", "in_force",
]
