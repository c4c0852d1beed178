"""Several annotators per image: read an annotations CSV (long or wide) into one table.

* **Long**: header ``path,annotator,label``, one row per annotation; other columns (a timestamp)
  are ignored when paths repeat (with one annotation per image the form would be ambiguous).
* **Wide**: header ``path,<annotator 1>,<annotator 2>,...``, one row per image, an empty cell
  where that annotator gave no label.

Paths are relative to the dataset root (POSIX or Windows separators), labels and annotator
names are read as strings. Unlike a labels CSV, whose unusable rows go to ``skipped.csv``,
an annotations CSV must be right as a whole: an unknown path, an empty label, an annotator
labelling one image twice are :class:`~labelaudit.errors.AnnotationsError` with the CSV line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from labelaudit.errors import AnnotationsError
from labelaudit.data.loading import _csv_encodings, _csv_relative_path, csv_parse_problem

__all__ = ["Annotations", "read_annotations", "LONG_COLUMNS"]

#: Columns of the long form (and of :attr:`Annotations.table`).
LONG_COLUMNS = ("path", "annotator", "label")
_EXAMPLES = 3


@dataclass
class Annotations:
    """Every annotation of a dataset.

    Attributes
    ----------
    table : pandas.DataFrame
        ``path, annotator, label`` (strings), one row per annotation, sorted by path then
        annotator order; paths are POSIX and relative to the dataset root.
    annotators : list of str
        Annotator names in order of first appearance (the columns of :meth:`votes`).
    form : {"long", "wide"}
        Which CSV form was read.
    """

    table: pd.DataFrame
    annotators: list[str]
    form: str

    @property
    def paths(self) -> list[str]:
        """Annotated paths, sorted."""
        return sorted(self.table["path"].unique())

    def votes(self, paths, classes) -> np.ndarray:
        """Annotations as class ids, shape (len(paths), n_annotators).

        -1 where the annotator did not label the image, -2 where the label is not one of
        ``classes`` (see :mod:`labelaudit.consensus.estimate`).
        """
        row = {p: i for i, p in enumerate(paths)}
        col = {a: j for j, a in enumerate(self.annotators)}
        cls = {c: k for k, c in enumerate(classes)}
        out = np.full((len(row), len(col)), -1, dtype=np.int64)
        t = self.table[self.table["path"].isin(row)]
        out[t["path"].map(row).to_numpy(), t["annotator"].map(col).to_numpy()] = \
            t["label"].map(lambda lab: cls.get(lab, -2)).to_numpy()
        return out

    def labels_of(self, paths) -> list[list[tuple[str, str]]]:
        """Per path, its ``(annotator, label)`` pairs in annotator order."""
        grouped = {p: list(zip(g["annotator"], g["label"])) for p, g in self.table.groupby("path", sort=False)}
        return [grouped.get(p, []) for p in paths]


def read_annotations(csv_path: str | os.PathLike, root: str | os.PathLike) -> Annotations:
    """Read and check an annotations CSV (long or wide form; see the module docstring).

    Parameters
    ----------
    csv_path : path
        The CSV.
    root : path
        Dataset root the paths are relative to.

    Returns
    -------
    Annotations

    Raises
    ------
    AnnotationsError
        Missing or unreadable file, no ``path`` column, no annotator column, no rows, an
        empty label or annotator name (long form), an image without any label (wide form),
        the same annotator twice for one image, a path used twice (wide form), or a path
        that is not a file inside ``root``.
    """
    csv_path, root = Path(csv_path).expanduser(), Path(root).expanduser().resolve()
    raw = _read(csv_path)
    by_name = {str(c).strip().lower(): c for c in raw.columns}
    if "path" not in by_name:
        raise AnnotationsError(f"annotations CSV {csv_path} needs a 'path' column; columns found: "
                               f"{', '.join(repr(str(c)) for c in raw.columns) or 'none'}")
    if raw.empty:
        raise AnnotationsError(f"annotations CSV {csv_path} has a header but no rows")
    if {"annotator", "label"} <= set(by_name) and (len(raw.columns) == 3 or _paths_repeat(raw, by_name)):
        table, form = _long(raw, by_name, csv_path), "long"  # other columns (a timestamp, a task id) are ignored
    elif {"annotator", "label"} <= set(by_name):
        raise AnnotationsError(
            f"annotations CSV {csv_path} is ambiguous: it has 'annotator' and 'label' columns and others, and no "
            "path repeats. One row per annotation (long): keep only path,annotator,label. One row per image (wide): "
            "rename the annotators called 'annotator' and 'label'")
    else:
        table, form = _wide(raw, by_name, csv_path), "wide"
    table["path"] = _relative_paths(table, root, csv_path)
    _check_duplicates(table, csv_path, form)
    _check_files(table, root, csv_path)
    annotators = list(dict.fromkeys(table["annotator"]))
    order = {a: i for i, a in enumerate(annotators)}
    table = table.assign(_o=table["annotator"].map(order)).sort_values(["path", "_o"], kind="stable")
    return Annotations(table=table[list(LONG_COLUMNS)].reset_index(drop=True), annotators=annotators, form=form)


def _paths_repeat(raw: pd.DataFrame, by_name: dict) -> bool:
    """Whether a path is on several rows: one row per annotation, since a wide CSV has one row per image."""
    return bool(raw[by_name["path"]].str.strip().duplicated().any())


def _read(csv_path: Path) -> pd.DataFrame:
    if not csv_path.is_file():
        raise AnnotationsError(f"annotations CSV not found: {csv_path}")
    for encoding in _csv_encodings(csv_path):
        try:
            return pd.read_csv(csv_path, dtype=str, keep_default_na=False, encoding=encoding)
        except UnicodeDecodeError:
            continue
        except pd.errors.EmptyDataError:
            raise AnnotationsError(f"annotations CSV {csv_path} is empty; it needs a header: "
                                   "path,annotator,label (long) or path,<annotator>,... (wide)") from None
        except (pd.errors.ParserError, ValueError) as exc:
            raise AnnotationsError(f"annotations CSV {csv_path} cannot be parsed: {csv_parse_problem(exc)}") from None
    raise AnnotationsError(f"annotations CSV {csv_path} does not decode as UTF-8/16/32; save it as UTF-8")


def _lines(mask) -> str:
    """CSV line numbers (header = line 1) of the rows in ``mask``, a few of them."""
    rows = np.flatnonzero(np.asarray(mask)) + 2
    more = f" and {len(rows) - _EXAMPLES} more" if len(rows) > _EXAMPLES else ""
    return ", ".join(str(r) for r in rows[:_EXAMPLES]) + more


def _long(raw: pd.DataFrame, by_name: dict, csv_path: Path) -> pd.DataFrame:
    table = pd.DataFrame({c: raw[by_name[c]].str.strip() for c in LONG_COLUMNS})
    table["line"] = np.arange(len(table)) + 2
    for column in LONG_COLUMNS:
        empty = table[column] == ""
        if empty.any():
            raise AnnotationsError(f"annotations CSV {csv_path}: empty {column} on line(s) {_lines(empty)}; "
                                   f"every row needs a {column}")
    return table


def _wide(raw: pd.DataFrame, by_name: dict, csv_path: Path) -> pd.DataFrame:
    path_col = by_name["path"]
    names = [c for c in raw.columns if c != path_col]
    if not names:
        raise AnnotationsError(f"annotations CSV {csv_path} has no annotator column: use path,annotator,label "
                               "(one row per annotation) or path,<annotator 1>,<annotator 2>,...")
    stripped = [str(c).strip() for c in names]
    if any(not n or n.startswith("Unnamed:") for n in stripped) or len(set(stripped)) < len(stripped):
        raise AnnotationsError(f"annotations CSV {csv_path}: every annotator column needs a distinct name; "
                               f"found {', '.join(repr(n) for n in stripped)}")
    cells = raw[names].apply(lambda col: col.str.strip())
    none = (cells == "").all(axis=1).to_numpy()
    if none.any():
        raise AnnotationsError(f"annotations CSV {csv_path}: no label at all on line(s) {_lines(none)}; "
                               "every image needs at least one annotator's label")
    paths, lines = raw[path_col].str.strip().to_numpy(), np.arange(len(raw)) + 2
    # one block per annotator column, built by hand: an annotator may be called "line" or "label"
    long = pd.concat([pd.DataFrame({"path": paths, "line": lines, "annotator": name, "label": cells[column].to_numpy()})
                      for column, name in zip(names, stripped)], ignore_index=True)
    return long[long["label"] != ""].sort_values("line", kind="stable").reset_index(drop=True)


def _relative_paths(table: pd.DataFrame, root: Path, csv_path: Path) -> list[str]:
    out, bad = [], []
    for raw, line in zip(table["path"], table["line"]):
        rel, problem = _csv_relative_path(raw, root) if raw else (None, "empty path")
        if rel is None:
            bad.append(f"line {line} {raw!r}: {problem}")
        out.append(rel)
    if bad:
        raise AnnotationsError(f"annotations CSV {csv_path}: {len(bad)} unusable path(s), e.g. "
                               + "; ".join(bad[:_EXAMPLES]))
    return out


def _check_duplicates(table: pd.DataFrame, csv_path: Path, form: str) -> None:
    if form == "wide":
        lines = table.drop_duplicates(["path", "line"])
        twice = lines.duplicated("path", keep=False)
        if twice.any():
            first = lines[twice].iloc[0]
            where = ", ".join(str(v) for v in lines.loc[lines["path"] == first["path"], "line"])
            raise AnnotationsError(f"annotations CSV {csv_path}: path {first['path']!r} is on more than one row "
                                   f"(lines {where}); a wide CSV has one row per image. If each row is one "
                                   "annotation, name the columns path,annotator,label")
        return
    twice = table.duplicated(["path", "annotator"], keep=False)
    if twice.any():
        first = table[twice].iloc[0]
        rows = table[(table["path"] == first["path"]) & (table["annotator"] == first["annotator"])]
        raise AnnotationsError(
            f"annotations CSV {csv_path}: annotator {first['annotator']!r} labels {first['path']!r} more than "
            f"once (lines {', '.join(str(v) for v in rows['line'])}: "
            f"{', '.join(repr(v) for v in rows['label'])}); keep one row per annotator and image")


def _check_files(table: pd.DataFrame, root: Path, csv_path: Path) -> None:
    first_line = table.drop_duplicates("path")
    missing = [(p, line) for p, line in zip(first_line["path"], first_line["line"]) if not (root / p).is_file()]
    if missing:
        examples = "; ".join(f"{p!r} (line {line})" for p, line in missing[:_EXAMPLES])
        raise AnnotationsError(f"annotations CSV {csv_path}: {len(missing)} path(s) are not files in {root}, "
                               f"e.g. {examples}; paths are relative to the dataset folder")


def write_provisional_labels(annotations: Annotations, path: str | os.PathLike) -> Path:
    """Write ``path,label`` with each image's majority vote (the labels the folds train on); return the path.

    Ties go to the label given most often over the whole CSV, then to the first in sorted order
    (:func:`labelaudit.consensus.majority_vote`).
    """
    from labelaudit.consensus import majority_vote
    from labelaudit.fsutil import atomic_write

    classes = sorted(annotations.table["label"].unique())
    paths = annotations.paths
    labels = majority_vote(annotations.votes(paths, classes), len(classes))
    frame = pd.DataFrame({"path": paths, "label": np.asarray(classes, dtype=object)[labels]})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda fh: frame.to_csv(fh, index=False))
