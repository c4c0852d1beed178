"""Keyboard shortcuts: the one table the pages show and ``app.js`` binds."""

from __future__ import annotations

from typing import NamedTuple


class Shortcut(NamedTuple):
    keys: tuple[str, ...]   # KeyboardEvent.key values; the first is shown
    command: str            # what app.js does
    text: str               # shown in the help


#: The number keys that relabel, in class order: the 1st class is ``1``, the 10th is ``0``.
CLASS_KEYS: tuple[str, ...] = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "0")
CLASS_KEYS_SHOWN = ("1–9", "0")


def class_keys(classes: list[str]) -> list[tuple[str, str]]:
    """``(key, class name)`` of the classes a number key reaches (the first ten)."""
    return list(zip(CLASS_KEYS, classes))


DECIDE = [
    Shortcut(("a",), "accept", "Keep the given label"),
    Shortcut(("s",), "suggested", "Take the suggested label"),
    Shortcut(CLASS_KEYS, "class", "Relabel by class number: 1–9, 0 for the 10th (numbers below)"),
    Shortcut(("c",), "choose", "Choose any class (type to filter, Enter)"),
    Shortcut(("x", "u"), "unusable", "Mark unusable (dropped from the dataset)"),
    Shortcut(("e",), "note", "Add a note to the decision"),
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
    "grid": DECIDE[:5] + DECIDE[7:] + [
        Shortcut(("ArrowRight", "l"), "right", "Move right"),
        Shortcut(("ArrowLeft", "h"), "left", "Move left"),
        Shortcut(("ArrowDown", "j"), "down", "Move down"),
        Shortcut(("ArrowUp", "k"), "up", "Move up"),
        Shortcut((" ",), "toggle", "Select / unselect (Shift+click: range)"),
        Shortcut(("*",), "all", "Select all shown"),
        Shortcut(("Escape",), "none", "Clear the selection"),
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
    "queue": [(("A",), "keep given"), (("S",), "take suggestion"), (CLASS_KEYS_SHOWN, "class"), (("C",), "other class"),
              (("X",), "unusable"), (("E",), "note"), (("J", "K"), "next / prev"), (("Z",), "undo"),
              (("Enter",), "open"), (("G",), "grid"), (("?",), "all shortcuts")],
    "grid": [(("←", "↑", "↓", "→"), "move"), (("Space",), "select"), (("*",), "all"), (("Esc",), "none"),
             (("A",), "keep given"), (("S",), "take suggestion"), (CLASS_KEYS_SHOWN, "class"), (("C",), "other class"),
             (("X",), "unusable"), (("Z",), "undo"), (("?",), "all shortcuts")],
    "sample": [(("A",), "keep given"), (("S",), "take suggestion"), (CLASS_KEYS_SHOWN, "class"), (("C",), "other class"),
               (("X",), "unusable"), (("E",), "note"), (("J", "K"), "next / prev"), (("Z",), "undo"),
               (("Q",), "queue"), (("?",), "all shortcuts")],
    "overview": [(("Q",), "review queue"), (("G",), "grid mode"), (("?",), "all shortcuts")],
    "export": [(("Q",), "review queue"), (("?",), "all shortcuts")],
}


def bar(page: str) -> list[tuple[tuple[str, ...], str]]:
    return BAR.get(page, [])
