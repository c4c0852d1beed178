"""The review actions, written out once, and what an action on a sample means.

Everything that names the actions -- the API schemas, the templates and ``app.js`` (through
the page config), the database's ``CHECK`` constraint, the export -- reads them from here.
"""

from __future__ import annotations

from collections.abc import Collection
from enum import Enum

from labelaudit.errors import DecisionError

__all__ = [
    "Action", "ACTIONS", "IN_FORCE_ACTIONS", "LABEL_ACTIONS", "UNRESOLVED_ACTIONS", "RESOLVED_ACTIONS", "ACTION_TEXT",
    "ACTION_KIND_TEXT", "label_in_force", "labels_in_force", "resolve", "check_stored",
]


class Action(str, Enum):
    """What a reviewer decides for a sample.

    The stored ``label`` of a decision is the label the sample ends up with: the given one
    (``accept``), the suggested one (``suggested``), another class (``relabel``) or none
    (``unusable`` drops the sample; ``clear`` withdraws the decision in force). ``unsure``
    asks for a second opinion: it is in force like a decision (listed, filterable, undone
    like one) but resolves nothing -- the export treats the sample as unreviewed until a
    later decision replaces it.
    """

    ACCEPT = "accept"
    SUGGESTED = "suggested"
    RELABEL = "relabel"
    UNUSABLE = "unusable"
    UNSURE = "unsure"
    CLEAR = "clear"

    def __str__(self) -> str:
        return self.value


#: Every action, in the order the API documents them.
ACTIONS: tuple[str, ...] = tuple(a.value for a in Action)
#: Actions that leave a decision in force (all but ``clear``).
IN_FORCE_ACTIONS: tuple[str, ...] = tuple(a for a in ACTIONS if a != Action.CLEAR)
#: Actions whose stored row carries a label.
LABEL_ACTIONS: tuple[str, ...] = (Action.ACCEPT.value, Action.SUGGESTED.value, Action.RELABEL.value)
#: Actions in force that leave the sample undecided (the export keeps its given label).
UNRESOLVED_ACTIONS: tuple[str, ...] = (Action.UNSURE.value,)
#: Actions in force that settle the sample: the export applies them (all of ``IN_FORCE_ACTIONS`` but the unresolved).
RESOLVED_ACTIONS: tuple[str, ...] = tuple(a for a in IN_FORCE_ACTIONS if a not in UNRESOLVED_ACTIONS)
#: Short past-tense words the pages show for a decision in force.
ACTION_TEXT: dict[str, str] = {"accept": "kept", "suggested": "suggestion", "relabel": "relabeled",
                               "unusable": "unusable", "unsure": "unsure"}
#: What each kind of decision did, as the decision filter and the overview's bar name it.
ACTION_KIND_TEXT: dict[str, str] = {"accept": "kept given", "suggested": "took suggestion", "relabel": "other class",
                                    "unusable": "unusable", "unsure": "unsure (second opinion)"}


def label_in_force(action: str | None, label: str | None, given: str) -> str:
    """The label a sample has now: its decision's label, else the given one.

    ``action`` / ``label`` are the decision in force (None, None without one). ``unsure`` and
    ``unusable`` keep the given label here; the export drops an unusable sample.
    """
    return label if action in LABEL_ACTIONS and label is not None else given


def labels_in_force(actions, labels, given):
    """:func:`label_in_force` of each row, on pandas Series of equal index (missing values: no decision).

    Returns
    -------
    pandas.Series of str
    """
    return labels.where(actions.isin(LABEL_ACTIONS) & labels.notna(), given).astype(str)


def _kept_label(action: str, given: str, suggested: str, label: str | None, path: str) -> str:
    kept = given if action == Action.ACCEPT else suggested
    if label is not None and label != kept:
        which = "given" if action == Action.ACCEPT else "suggested"
        raise DecisionError(
            f"{action} keeps the {which} label {kept!r} of {path!r}, not {label!r}: "
            f"use action 'relabel' to set another label (or omit label)")
    return kept


def resolve(
    action: str,
    label: str | None,
    *,
    given: str,
    suggested: str,
    classes: Collection[str],
    path: str = "",
) -> tuple[str, str | None]:
    """The stored ``(action, label)`` for a requested action on one sample.

    Parameters
    ----------
    action : str
        One of :data:`ACTIONS`.
    label : str or None
        Required for ``relabel``; optional for ``accept`` / ``suggested``, where it must be
        the label the action keeps; ignored for ``unusable``, ``unsure`` and ``clear``.
    given, suggested : str
        The sample's given and suggested labels.
    classes : collection of str
        The scan's class names.
    path : str
        The sample's path, for messages.

    Returns
    -------
    tuple
        A ``relabel`` to the given or the suggested class is stored as ``accept`` /
        ``suggested``, so that the log says what the reviewer agreed with.

    Raises
    ------
    DecisionError
        Unknown action or class, ``relabel`` without a label, or a label that contradicts
        ``accept`` / ``suggested``.
    """
    if action in (Action.ACCEPT, Action.SUGGESTED):
        return str(action), _kept_label(action, given, suggested, label, path)
    if action == Action.RELABEL:
        if not label:
            raise DecisionError("relabel needs a label: the class to set")
        if label not in classes:
            raise DecisionError(f"unknown class {label!r}")
        if label == given:
            return Action.ACCEPT.value, label
        if label == suggested:
            return Action.SUGGESTED.value, label
        return Action.RELABEL.value, label
    if action in (Action.UNUSABLE, Action.UNSURE, Action.CLEAR):
        return str(action), None
    raise DecisionError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")


def check_stored(action: str, label: str | None) -> None:
    """Refuse a row that cannot be stored: unknown action, missing or superfluous label.

    Raises
    ------
    DecisionError
    """
    if action not in ACTIONS:
        raise DecisionError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
    if action in LABEL_ACTIONS and not label:
        raise DecisionError(f"action {action!r} needs a label")
    if action not in LABEL_ACTIONS and label is not None:
        raise DecisionError(f"action {action!r} takes no label")
