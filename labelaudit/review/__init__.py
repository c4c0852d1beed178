"""The review domain: the actions and what they mean, the decisions log (append, undo,
history, request ids), the decision in force, and the one writer of the database.

``samples_with_decisions(conn)`` -- every sample with its decision in force, as a
DataFrame -- and ``unscored_with_decisions(conn)`` -- the images a scan did not score, with
theirs -- are what the export reads. Besides decisions: free tags (:mod:`.tags`), the
class order and keys (:mod:`.classorder`), map selections (:mod:`.selections`) and the 2-D
map of the embeddings (:mod:`.projection`).
"""

from labelaudit.review.actions import (
    ACTION_KIND_TEXT,
    ACTION_TEXT,
    ACTIONS,
    IN_FORCE_ACTIONS,
    LABEL_ACTIONS,
    RESOLVED_ACTIONS,
    UNRESOLVED_ACTIONS,
    Action,
    label_in_force,
    resolve,
)
from labelaudit.review.classorder import ClassOrder, default_order, parse_class_order, read_class_order
from labelaudit.review.database import ReviewDatabase
from labelaudit.review.decisions import (
    accepted_labels_since_changed,
    count_decisions_in_force,
    decision_history,
    orphaned_decisions,
    record_decision,
    record_decisions,
    samples_with_decisions,
    undo_last_decision,
    unscored_with_decisions,
)
from labelaudit.review.schema import SAMPLES_WITH_DECISIONS, in_force

__all__ = [
    "Action", "ACTIONS", "IN_FORCE_ACTIONS", "LABEL_ACTIONS", "UNRESOLVED_ACTIONS", "RESOLVED_ACTIONS", "ACTION_TEXT",
    "ACTION_KIND_TEXT", "label_in_force", "resolve",
    "ReviewDatabase", "ClassOrder", "default_order", "parse_class_order", "read_class_order",
    "record_decision", "record_decisions", "undo_last_decision", "decision_history", "samples_with_decisions",
    "unscored_with_decisions", "count_decisions_in_force", "orphaned_decisions", "accepted_labels_since_changed", "SAMPLES_WITH_DECISIONS", "in_force",
]
