"""Keyboard shortcuts: the one table the pages show and ``app.js`` binds."""

from __future__ import annotations

from typing import NamedTuple

from labelaudit.review import ClassOrder


class Shortcut(NamedTuple):
    keys: tuple[str, ...]   # KeyboardEvent.key values; the first is shown
    command: str            # what app.js does
    text: str               # shown in the help


#: The number keys that relabel; which class each reaches is the scan's
#: :class:`~labelaudit.review.ClassOrder` (natural order: ``four`` is ``4``; else 1-9, 0 in order).
CLASS_KEYS: tuple[str, ...] = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "0")
CLASS_KEYS_SHOWN = ("1–9", "0")


def class_keys(order: ClassOrder) -> list[tuple[str, str]]:
    """``(key, class name)`` of the classes a number key reaches, in display order."""
    return order.key_list()


DECIDE = [
    Shortcut(("a",), "accept", "Keep the given label"),
    Shortcut(("s",), "suggested", "Take the suggested label"),
    Shortcut(CLASS_KEYS, "class", "Relabel by the class's number key (shown on the buttons and below)"),
    Shortcut(("c",), "choose", "Choose any class (type to filter, Enter; the suggestion is preselected)"),
    Shortcut(("x", "u"), "unusable", "Mark unusable (dropped from the dataset)"),
    Shortcut(("w",), "unsure", "Unsure: ask for a second opinion (the export keeps the given label)"),
    Shortcut(("e",), "note", "Add a note to the decision"),
    Shortcut(("t",), "tags", "Tags of the sample (comma-separated)"),
    Shortcut(("Backspace", "Delete"), "clear", "Clear the decision (back to unreviewed)"),
    Shortcut(("z",), "undo", "Undo your last decision"),
]

PAGES: dict[str, list[Shortcut]] = {
    "queue": DECIDE + [
        Shortcut(("j", "n", "ArrowDown"), "next", "Next sample"),
        Shortcut(("k", "p", "ArrowUp"), "prev", "Previous sample"),
        Shortcut(("o", "Enter"), "open", "Open the sample page"),
        Shortcut(("g",), "grid", "Grid of this given → suggested pair"),
        Shortcut(("/",), "search", "Search file names"),
        Shortcut(("?",), "help", "Show / hide this help"),
    ],
    "grid": DECIDE[:6] + DECIDE[9:] + [
        Shortcut(("ArrowRight", "l"), "right", "Move right"),
        Shortcut(("ArrowLeft", "h"), "left", "Move left"),
        Shortcut(("ArrowDown", "j"), "down", "Move down"),
        Shortcut(("ArrowUp", "k"), "up", "Move up"),
        Shortcut((" ",), "toggle", "Select / unselect (Shift+click: range)"),
        Shortcut(("*",), "unreviewed", "Select the unreviewed shown (again: all shown)"),
        Shortcut(("Escape",), "none", "Clear the selection"),
        Shortcut(("n", "]"), "next_pair", "Next given → suggested pair"),
        Shortcut(("p", "["), "prev_pair", "Previous pair"),
        Shortcut(("o", "Enter"), "open", "Open the sample page"),
        Shortcut(("q",), "queue", "Back to the queue"),
        Shortcut(("?",), "help", "Show / hide this help"),
    ],
    "sample": DECIDE + [
        Shortcut(("j", "n", "ArrowRight"), "next", "Next sample"),
        Shortcut(("k", "p", "ArrowLeft"), "prev", "Previous sample"),
        Shortcut(("q",), "queue", "Back to the queue"),
        Shortcut(("?",), "help", "Show / hide this help"),
    ],
    "overview": [
        Shortcut(("q",), "queue", "Open the review queue"),
        Shortcut(("g",), "grid", "Open grid mode"),
        Shortcut(("m",), "map", "Open the map"),
        Shortcut(("?",), "help", "Show / hide this help"),
    ],
    "map": [
        Shortcut(("Enter", "g"), "open_grid", "Open the boxed samples in the grid"),
        Shortcut(("Escape",), "none", "Clear the box"),
        Shortcut(("r",), "reset", "Reset the zoom"),
        Shortcut(("f",), "flagged_only", "Show flagged samples only / all"),
        Shortcut(("q",), "queue", "Open the review queue"),
        Shortcut(("?",), "help", "Show / hide this help"),
    ],
    "settings": [
        Shortcut(("q",), "queue", "Open the review queue"),
        Shortcut(("?",), "help", "Show / hide this help"),
    ],
    "export": [
        Shortcut(("q",), "queue", "Open the review queue"),
        Shortcut(("?",), "help", "Show / hide this help"),
    ],
}

KEY_LABELS = {" ": "Space", "ArrowDown": "↓", "ArrowUp": "↑", "ArrowLeft": "←", "ArrowRight": "→",
              "Backspace": "⌫", "Delete": "Del", "Escape": "Esc"}


def label(key: str) -> str:
    return KEY_LABELS.get(key, key.upper() if len(key) == 1 and key.isalpha() else key)


def keymap(page: str) -> dict[str, str]:
    """``{KeyboardEvent.key: command}`` for ``page``."""
    return {key: s.command for s in PAGES.get(page, []) for key in s.keys}


def help_rows(page: str) -> list[dict[str, object]]:
    rows = []
    for s in PAGES.get(page, []):
        keys = list(CLASS_KEYS_SHOWN) if s.command == "class" else [label(k) for k in s.keys]
        rows.append({"keys": keys, "text": s.text, "command": s.command})
    return rows


#: The always-visible bar at the bottom of each page: (keys shown, short text).
#: (Open is shown as Enter: an "O" beside the number keys reads as the 0 of the 10th class.)
BAR: dict[str, list[tuple[tuple[str, ...], str]]] = {
    "queue": [(("A",), "keep given"), (("S",), "take suggestion"), (("C",), "other class"),
              (("X",), "unusable"), (("W",), "unsure"), (("E",), "note"), (("T",), "tags"), (("J", "K"), "next / prev"),
              (("Z",), "undo"), (("Enter",), "open"), (("G",), "grid"), (("?",), "all shortcuts")],
    "grid": [(("←", "↑", "↓", "→"), "move"), (("Space",), "select"), (("*",), "unreviewed (again: all)"),
             (("Esc",), "none"), (("N", "P"), "next / prev pair"),
             (("A",), "keep given"), (("S",), "take suggestion"), (("C",), "other class"),
             (("X",), "unusable"), (("W",), "unsure"), (("Z",), "undo"), (("?",), "all shortcuts")],
    "sample": [(("A",), "keep given"), (("S",), "take suggestion"), (("C",), "other class"),
               (("X",), "unusable"), (("W",), "unsure"), (("E",), "note"), (("T",), "tags"), (("J", "K"), "next / prev"),
               (("Z",), "undo"), (("Q",), "queue"), (("?",), "all shortcuts")],
    "overview": [(("Q",), "review queue"), (("G",), "grid mode"), (("M",), "map"), (("?",), "all shortcuts")],
    "map": [(("drag",), "box"), (("wheel",), "zoom"), (("Shift", "drag"), "pan"), (("Enter",), "open box in grid"),
            (("Esc",), "clear"), (("R",), "reset zoom"), (("F",), "flagged only"), (("?",), "all shortcuts")],
    "settings": [(("Q",), "review queue"), (("?",), "all shortcuts")],
    "export": [(("Q",), "review queue"), (("?",), "all shortcuts")],
}


def bar(page: str) -> list[tuple[tuple[str, ...], str]]:
    return BAR.get(page, [])
