"""The order of the classes in the review app and the number key of each.

By default the classes are in *natural* order -- when every class name is a number, a
number word (``zero`` ... ``twenty``) or ends in a number, in numeric order, otherwise in
the dataset's own order -- and classes numbered 0-9 get their own digit as key (``four`` is
``4``, ``zero`` is ``0``); other classes get ``1``-``9`` then ``0`` in order. A reviewer can
set both (``labelaudit review --class-order``, the settings page); the choice is stored
in the scan database under ``review_settings.class_order``.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from labelaudit.errors import ReviewSettingsError
from labelaudit.scandir.database import utc_now

__all__ = ["ClassOrder", "KEYS", "NUMBER_WORDS", "class_number", "natural_order", "default_order",
           "parse_class_order", "read_class_order", "write_class_order", "SETTING"]

#: The keys a class can have, in the order they are handed out.
KEYS = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "0")
SETTING = "class_order"
NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty".split())}
_TRAILING_NUMBER = re.compile(r"^(.*?)(\d+)$")


def class_number(name: str) -> tuple[str, int] | None:
    """``(prefix, number)`` a class name stands for, or None.

    ``"7"`` and ``"seven"`` are ``("", 7)``; ``"class_10"`` is ``("class_", 10)``.
    """
    text = name.strip().lower()
    if text in NUMBER_WORDS:
        return "", NUMBER_WORDS[text]
    m = _TRAILING_NUMBER.match(text)
    if m is None:
        return None
    return m.group(1), int(m.group(2))


def natural_order(classes: Sequence[str]) -> list[str]:
    """Numeric order when every class is numbered (:func:`class_number`), else ``classes`` as given."""
    numbers = [class_number(c) for c in classes]
    if not classes or any(n is None for n in numbers) or len(set(numbers)) < len(numbers):
        return list(classes)
    return [c for _, c in sorted(zip(numbers, classes))]


@dataclass(frozen=True)
class ClassOrder:
    """Classes in display order and the key of each (a digit; classes past the tenth have none).

    Attributes
    ----------
    order : tuple of str
        Every class, once.
    keys : dict
        ``{class: key}`` of the classes a key reaches.
    """

    order: tuple[str, ...]
    keys: dict[str, str]

    def key_list(self) -> list[tuple[str, str]]:
        """``[(key, class)]`` in display order."""
        return [(self.keys[c], c) for c in self.order if c in self.keys]

    def to_dict(self) -> dict:
        return {"order": list(self.order), "keys": dict(self.keys)}


def _digit_keys(order: Sequence[str]) -> dict[str, str] | None:
    """Each class's own digit when all are numbered 0-9 without a prefix, else None."""
    numbers = [class_number(c) for c in order]
    if len(order) > 10 or any(n is None or n[0].strip(" _-") or n[1] > 9 for n in numbers):
        return None
    digits = [str(n[1]) for n in numbers]
    return dict(zip(order, digits)) if len(set(digits)) == len(digits) else None


def _fill_keys(order: Sequence[str], fixed: dict[str, str]) -> dict[str, str]:
    """``fixed`` plus the unused keys handed out to the other classes in order."""
    free = [k for k in KEYS if k not in fixed.values()]
    keys = dict(fixed)
    for c in order:
        if c not in keys and free:
            keys[c] = free.pop(0)
    return keys


def default_order(classes: Sequence[str]) -> ClassOrder:
    """Natural order; a class numbered 0-9 gets its own digit, otherwise ``1``-``9``, ``0`` in order."""
    order = natural_order(classes)
    keys = _digit_keys(order) or _fill_keys(order, {})
    return ClassOrder(tuple(order), keys)


def parse_class_order(items: Sequence[str], classes: Sequence[str]) -> ClassOrder:
    """The order and keys a reviewer asks for.

    Parameters
    ----------
    items : sequence of str
        ``NAME`` or ``KEY=NAME`` (``KEY`` one digit), in the wanted order; ``["natural"]``
        or ``["dataset"]`` alone picks that order. Classes not named follow in natural order.
    classes : sequence of str
        The scan's classes.

    Raises
    ------
    ReviewSettingsError
        An unknown or repeated class, a key that is not one digit or is used twice.
    """
    items = [i.strip() for i in items if i.strip()]
    if items in (["natural"], []) and "natural" not in classes:
        return default_order(classes)
    if items == ["dataset"] and "dataset" not in classes:
        return ClassOrder(tuple(classes), _fill_keys(classes, {}))
    order, fixed = _named(items, set(classes))
    rest = [c for c in natural_order(classes) if c not in order]
    return ClassOrder(tuple(order + rest), _fill_keys(order + rest, fixed))


def _named(items: Sequence[str], known: set[str]) -> tuple[list[str], dict[str, str]]:
    order: list[str] = []
    fixed: dict[str, str] = {}
    for item in items:
        key, name = None, item
        if item not in known and "=" in item:
            key, name = (p.strip() for p in item.split("=", 1))
        if name not in known:
            raise ReviewSettingsError(f"unknown class {name[:80]!r} in the class order")
        if name in order:
            raise ReviewSettingsError(f"class {name[:80]!r} is named twice in the class order")
        if key is not None:
            if key not in KEYS:
                raise ReviewSettingsError(f"the key of {name[:80]!r} must be one digit, not {key[:10]!r}")
            if key in fixed.values():
                raise ReviewSettingsError(f"key {key} is given to two classes")
            fixed[name] = key
        order.append(name)
    return order, fixed


def read_class_order(conn: sqlite3.Connection, classes: Sequence[str]) -> ClassOrder:
    """The stored order (classes no longer scanned dropped, new ones appended), or the default."""
    row = conn.execute("SELECT value FROM review_settings WHERE key = ?", (SETTING,)).fetchone()
    if row is None:
        return default_order(classes)
    try:
        data = json.loads(row[0])
        known = set(classes)
        order = [c for c in data["order"] if c in known]
        order += [c for c in natural_order(classes) if c not in order]
        keys = {c: k for c, k in data["keys"].items() if c in known and k in KEYS}
    except (ValueError, KeyError, TypeError, AttributeError):
        return default_order(classes)
    return ClassOrder(tuple(order), _fill_keys(order, keys) if len(keys) < 10 else keys)


def write_class_order(conn: sqlite3.Connection, order: ClassOrder | None, *, reviewer: str = "") -> None:
    """Store ``order`` (None: forget it, back to the default) inside the caller's transaction."""
    if order is None:
        conn.execute("DELETE FROM review_settings WHERE key = ?", (SETTING,))
        return
    conn.execute("INSERT OR REPLACE INTO review_settings VALUES (?, ?, ?, ?)",
                 (SETTING, json.dumps(order.to_dict()), utc_now(), reviewer))
