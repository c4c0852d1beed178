"""Bring your own model: embeddings or out-of-sample probabilities as the input of a scan.

Three inputs, each a ``.npy`` file, a ``.parquet`` file or (Python API) a numpy array:

* ``features`` -- float array (N, D): one embedding per image (CLIP, DINOv2, a fine-tuned
  network, ...);
* ``features_flip`` -- float array (N, D): the embeddings of the horizontally mirrored
  images, row for row (flip signals);
* ``pred_probs`` -- float array (N, C): the user's own out-of-sample probabilities,
  columns in the scan's class order (class names sorted).

**Row order rule.** Row ``i`` of an array belongs to the image named by, in this order:
the array's own ``path`` column (parquet); row ``i`` of the ``index`` CSV's ``path``
column; else the ``i``-th file of the scan's file order, the relative POSIX paths of the
listed files sorted (:func:`labelaudit.data.loading.list_dataset`). Every listed file
needs exactly one row. Any mismatch -- row count, unknown or repeated path, NaN/inf,
dtype, shape -- raises :class:`~labelaudit.errors.InputArrayError` before any training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from labelaudit.data.loading import LoadedDataset, _csv_relative_path, csv_parse_problem, has_image_suffix
from labelaudit.errors import InputArrayError, MissingExtra

__all__ = ["InputArray", "ArrayInputs", "read_array", "read_index", "load_inputs", "align_inputs"]

#: Rows checked for NaN/inf at a time (bounds the temporary memory of the check).
_CHUNK_ROWS = 65536
#: Largest allowed deviation of a ``pred_probs`` row sum from 1.
_SUM_TOLERANCE = 1e-3
#: Names a parquet file's vector column is looked up by when it has several list columns.
_VECTOR_COLUMNS = ("embedding", "embeddings", "features", "feature", "pred_probs", "probs", "vector")


@dataclass
class InputArray:
    """One user-supplied array and the images its rows belong to.

    Attributes
    ----------
    option : str
        How the user named it (``--features``, ``--features-flip``, ``--pred-probs``).
    source : str
        The file it was read from, or ``"array"``.
    values : numpy.ndarray of float, shape (n, d)
        Finite values (possibly a read-only memory map of a ``.npy`` file).
    paths : numpy.ndarray of str, shape (n,), or None
        Path of each row (parquet ``path`` column or ``--index``), None = the scan's file order.
    """

    option: str
    source: str
    values: np.ndarray
    paths: np.ndarray | None = None

    def where(self) -> str:
        return f"{self.option} ({self.source})"


@dataclass
class ArrayInputs:
    """The arrays of a bring-your-own-model scan (at least ``features`` or ``pred_probs``).

    After :func:`align_inputs` every array is float32 with one row per listed file, in the
    scan's file order.
    """

    features: InputArray | None = None
    features_flip: InputArray | None = None
    pred_probs: InputArray | None = None
    #: Where the rows' paths came from when an index was given: its CSV file, or ``"paths"`` (given as values).
    index: str | None = None

    @property
    def mode(self) -> str:
        """``"features"`` (heads are trained) or ``"pred_probs"`` (the user's probabilities are used)."""
        return "pred_probs" if self.pred_probs is not None else "features"

    def arrays(self) -> list[InputArray]:
        return [a for a in (self.features, self.features_flip, self.pred_probs) if a is not None]

    def describe(self) -> dict:
        """What the scan was computed from, for ``scan.json``."""
        arrays = {a.option.lstrip("-").replace("-", "_"): {"source": a.source, "shape": list(a.values.shape)}
                  for a in self.arrays()}
        return {"mode": self.mode, **arrays, **({"index": self.index} if self.index is not None else {})}


# ------------------------------------------------------------------------- reading


def read_array(source, option: str) -> InputArray:
    """Read and check one input array.

    Parameters
    ----------
    source : path-like, numpy.ndarray or list of lists
        ``.npy`` (memory-mapped), ``.parquet`` (a ``path`` column and one list column), or an array
        (anything ``numpy.asarray`` takes: a torch tensor on the CPU, nested lists of numbers).
    option : str
        The option's name, for messages.

    Returns
    -------
    InputArray
        Values of shape (n, d), floating point, finite.

    Raises
    ------
    InputArrayError
        Missing or unreadable file, unknown format, wrong dtype or shape, NaN/inf rows.
    MissingExtra
        A parquet file without pyarrow installed.
    """
    if isinstance(source, (list, tuple)):  # nested Python lists of numbers
        array = InputArray(option, "array", np.asarray(source, dtype=np.float64))
    elif isinstance(source, np.ndarray) or (not isinstance(source, (str, os.PathLike)) and hasattr(source, "__array__")):
        array = InputArray(option, "array", np.asarray(source))
    else:
        array = _read_file(Path(source), option)
    _check_values(array)
    return array


def _read_file(path: Path, option: str) -> InputArray:
    if not path.is_file():
        raise InputArrayError(f"{option}: file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            values = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InputArrayError(f"{option}: cannot read {path} as a .npy array: {exc}") from None
        return InputArray(option, str(path), values)
    if suffix in (".parquet", ".pq"):
        values, paths = _read_parquet(path, option)
        return InputArray(option, str(path), values, paths)
    raise InputArrayError(f"{option}: {path} is neither a .npy nor a .parquet file")


def _read_parquet(path: Path, option: str) -> tuple[np.ndarray, np.ndarray]:
    """(values (n, d), paths (n,)) of a parquet file with a ``path`` column and one list column."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingExtra('reading parquet needs pyarrow: pip install "pyarrow>=14"') from None
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputArrayError(f"{option}: cannot read {path} as parquet: {exc}") from None
    by_name = {name.lower(): name for name in table.column_names}
    if "path" not in by_name:
        raise InputArrayError(f"{option}: {path} has no 'path' column (columns: {', '.join(table.column_names)})")
    paths = np.asarray(table.column(by_name["path"]).to_pylist(), dtype=object)
    column = _vector_column(table, path, option)
    return _list_column_values(table.column(column), path, option), paths


def _vector_column(table, path: Path, option: str) -> str:
    import pyarrow as pa

    lists = [f.name for f in table.schema
             if pa.types.is_list(f.type) or pa.types.is_large_list(f.type) or pa.types.is_fixed_size_list(f.type)]
    if len(lists) == 1:
        return lists[0]
    named = [name for name in lists if name.lower() in _VECTOR_COLUMNS]
    if len(named) == 1:
        return named[0]
    raise InputArrayError(
        f"{option}: {path} needs exactly one list column holding the vectors (or one named "
        f"{'/'.join(_VECTOR_COLUMNS)}); list columns found: {', '.join(lists) or 'none'}")


def _list_column_values(column, path: Path, option: str) -> np.ndarray:
    """The (n, d) float values of a parquet list column whose rows all have length d."""
    import pyarrow as pa
    import pyarrow.compute as pc

    chunked = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if chunked.null_count:
        raise InputArrayError(f"{option}: {path} has {chunked.null_count} row(s) without a vector (null)")
    lengths = pc.list_value_length(chunked).to_numpy(zero_copy_only=False)
    if len(lengths) and (lengths != lengths[0]).any():
        bad = int(np.flatnonzero(lengths != lengths[0])[0])
        raise InputArrayError(f"{option}: {path}: vectors of different lengths (row 0 has {lengths[0]}, "
                              f"row {bad} has {lengths[bad]})")
    flat = chunked.flatten()
    if flat.null_count:
        raise InputArrayError(f"{option}: {path} has null values inside its vectors")
    values = flat.to_numpy(zero_copy_only=False)
    return values.reshape(len(lengths), int(lengths[0]) if len(lengths) else 0)


def _check_values(array: InputArray) -> None:
    """dtype, shape and finiteness of ``array.values``."""
    values, where = array.values, array.where()
    if values.dtype.kind != "f":
        raise InputArrayError(f"{where}: dtype {values.dtype} is not floating point; "
                              "save the array as float32 (float16 and float64 are accepted too)")
    if values.ndim != 2 or values.shape[0] == 0 or values.shape[1] == 0:
        raise InputArrayError(f"{where}: shape {values.shape}; expected a 2-D array (rows, columns), "
                              "one row per image, with at least one row and one column")
    if array.paths is not None and len(array.paths) != len(values):
        raise InputArrayError(f"{where}: {len(values)} rows but {len(array.paths)} paths")
    bad = _non_finite_rows(values)
    if len(bad):
        rows = ", ".join(str(r) for r in bad[:5])
        raise InputArrayError(f"{where}: {len(bad)} row(s) hold NaN or inf (0-based row(s) {rows}"
                              f"{', ...' if len(bad) > 5 else ''})")


def _non_finite_rows(values: np.ndarray) -> np.ndarray:
    """0-based rows of (n, d) ``values`` holding a NaN or an infinity, checked in chunks."""
    bad = [start + np.flatnonzero(~np.isfinite(values[start:start + _CHUNK_ROWS]).all(axis=1))
           for start in range(0, len(values), _CHUNK_ROWS)]
    return np.concatenate(bad) if bad else np.zeros(0, np.int64)


def read_index(source) -> np.ndarray:
    """The ``path`` column of an index CSV, one path per array row, in order.

    ``source`` may also be the paths themselves (a list, an array, a pandas Series, or a
    DataFrame with a ``path`` column).

    Raises
    ------
    InputArrayError
        Missing file, no ``path`` column, no rows, or an empty path.
    """
    if not isinstance(source, (str, os.PathLike)):  # the paths themselves: a list, an array, a Series
        return _index_paths(source)
    path = Path(source)
    if not path.is_file():
        raise InputArrayError(f"--index: file not found: {path}")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise InputArrayError(f"--index: cannot read {path} as CSV: {csv_parse_problem(exc)}") from None
    by_name = {str(c).strip().lower(): c for c in table.columns}
    if "path" not in by_name:
        raise InputArrayError(f"--index: {path} needs a header with a 'path' column "
                              f"(columns found: {', '.join(map(str, table.columns)) or 'none'})")
    paths = table[by_name["path"]].to_numpy(dtype=object)
    if len(paths) == 0:
        raise InputArrayError(f"--index: {path} has a header but no rows")
    empty = np.flatnonzero([not p.strip() for p in paths])
    if len(empty):
        raise InputArrayError(f"--index: {path}: empty path on CSV line {int(empty[0]) + 2}")
    return paths


def _index_paths(source) -> np.ndarray:
    """The paths of an index given as values (see :func:`read_index`)."""
    if isinstance(source, pd.DataFrame):
        by_name = {str(c).strip().lower(): c for c in source.columns}
        if "path" not in by_name:
            raise InputArrayError(f"index: a DataFrame needs a 'path' column (columns: "
                                  f"{', '.join(map(str, source.columns)) or 'none'})")
        source = source[by_name["path"]]
    paths = np.asarray(list(source), dtype=object)
    if len(paths) == 0:
        raise InputArrayError("index: no paths")
    bad = np.flatnonzero([not isinstance(p, (str, os.PathLike)) or not str(p).strip() for p in paths])
    if len(bad):
        raise InputArrayError(f"index: entry {int(bad[0])} ({paths[bad[0]]!r}) is no path")
    return np.array([os.fspath(p) for p in paths], dtype=object)


# ---------------------------------------------------------------------- checking


def load_inputs(*, features=None, features_flip=None, pred_probs=None, index=None) -> ArrayInputs | None:
    """Read and check the arrays of a bring-your-own-model scan, before anything else is done.

    Parameters
    ----------
    features : path-like or numpy.ndarray, optional
        Embeddings (N, D).
    features_flip : path-like or numpy.ndarray, optional
        Embeddings of the mirrored images (N, D); needs ``features``.
    pred_probs : path-like or numpy.ndarray, optional
        Out-of-sample probabilities (N, C), rows summing to 1.
    index : path-like, optional
        CSV whose ``path`` column names the image of each array row (for arrays without their
        own ``path`` column).

    Returns
    -------
    ArrayInputs or None
        None when neither ``features`` nor ``pred_probs`` is given (an image scan).

    Raises
    ------
    InputArrayError
        See :func:`read_array`; also ``features_flip`` without ``features`` or of another
        shape, ``pred_probs`` outside [0, 1] or rows not summing to 1, ``index`` without any
        array, or an ``index`` whose length differs from an array's row count.
    """
    if features_flip is not None and features is None:
        raise InputArrayError("--features-flip needs --features (the embeddings of the images themselves)")
    if features is None and pred_probs is None:
        if index is not None:
            raise InputArrayError("--index needs --features or --pred-probs")
        return None
    if features_flip is not None and pred_probs is not None:
        raise InputArrayError("--features-flip has no use with --pred-probs (nothing is trained, so there are no "
                              "flip signals); leave it out")
    inputs = ArrayInputs(
        features=None if features is None else read_array(features, "--features"),
        features_flip=None if features_flip is None else read_array(features_flip, "--features-flip"),
        pred_probs=None if pred_probs is None else read_array(pred_probs, "--pred-probs"),
    )
    _check_flip(inputs)
    if inputs.pred_probs is not None:
        _check_probabilities(inputs.pred_probs)
    if index is not None:
        inputs.index = str(index) if isinstance(index, (str, os.PathLike)) else "paths"
        _apply_index(inputs, read_index(index), inputs.index)
    return inputs


def _check_flip(inputs: ArrayInputs) -> None:
    flip, features = inputs.features_flip, inputs.features
    if flip is not None and flip.values.shape != features.values.shape:
        raise InputArrayError(f"{flip.where()} has shape {flip.values.shape}, {features.where()} has "
                              f"{features.values.shape}: the mirrored images' embeddings must match row for row")


def _check_probabilities(array: InputArray) -> None:
    values = array.values
    low, high = float(values.min()), float(values.max())
    if low < 0 or high > 1 + _SUM_TOLERANCE:
        raise InputArrayError(f"{array.where()}: values from {low:g} to {high:g}; probabilities lie in [0, 1] "
                              "(apply a softmax to logits first)")
    sums = np.asarray(values.sum(axis=1, dtype=np.float64))
    # 0.999 is within 1e-3 in any float type: each value's rounding moves the sum by up to its type's epsilon
    tolerance = _SUM_TOLERANCE + float(np.finfo(values.dtype).eps)
    off = np.flatnonzero(np.abs(sums - 1) > tolerance)
    if len(off) and np.all(np.abs(values.sum(axis=0, dtype=np.float64) - 1) <= tolerance):
        raise InputArrayError(f"{array.where()}: shape {values.shape} and its columns sum to 1, not its rows: it "
                              "looks transposed; pass one row per image and one column per class (probs.T)")
    if len(off):
        raise InputArrayError(f"{array.where()}: {len(off)} row(s) do not sum to 1 within {_SUM_TOLERANCE:g} "
                              f"(row {int(off[0])}: {sums[off[0]]:g}); each row must be a probability distribution "
                              "over the classes (renormalise: probs / probs.sum(axis=1, keepdims=True))")


def _apply_index(inputs: ArrayInputs, paths: np.ndarray, source: str) -> None:
    if all(array.paths is not None for array in inputs.arrays()):
        raise InputArrayError(f"--index ({source}) is not used: every input names its rows in its own 'path' column "
                              f"({', '.join(a.where() for a in inputs.arrays())}); leave --index out")
    for array in inputs.arrays():
        if array.paths is not None:
            continue  # a parquet file names its own rows
        if len(array.values) != len(paths):
            raise InputArrayError(f"{array.where()} has {len(array.values)} rows but --index ({source}) "
                                  f"lists {len(paths)} paths; they must match row for row")
        array.paths = paths


# ---------------------------------------------------------------------- aligning


def align_inputs(inputs: ArrayInputs, dataset: LoadedDataset) -> ArrayInputs:
    """The arrays reordered to the dataset's file order, one row per listed file, float32.

    Parameters
    ----------
    inputs : ArrayInputs
        From :func:`load_inputs`.
    dataset : LoadedDataset
        From :func:`labelaudit.data.loading.list_dataset` (paths sorted).

    Returns
    -------
    ArrayInputs
        Row ``i`` of every array belongs to ``dataset.paths[i]``; ``paths`` set to them.

    Raises
    ------
    InputArrayError
        Row count differs from the number of files (no paths given), a path that is not a
        listed file, a path given twice, or a listed file without a row.
    """
    listed = np.asarray(dataset.paths, dtype=object)
    position = {p: i for i, p in enumerate(dataset.paths)}
    aligned = {}
    for name in ("features", "features_flip", "pred_probs"):
        array = getattr(inputs, name)
        if array is not None:
            rows = _positions(array, position, dataset)
            order = np.argsort(rows)
            values = array.values if _is_identity(order) else array.values[order]
            aligned[name] = replace(array, values=np.ascontiguousarray(values, dtype=np.float32), paths=listed)
    return replace(inputs, **aligned)


def _is_identity(order: np.ndarray) -> bool:
    return bool((order == np.arange(len(order))).all())


def _positions(array: InputArray, position: dict[str, int], dataset: LoadedDataset) -> np.ndarray:
    """Position in ``dataset`` of each row of ``array``; every listed file exactly once."""
    n_files = len(dataset.paths)
    if array.paths is None:
        if len(array.values) != n_files:
            others = [p for p in dataset.paths if not has_image_suffix(p)]
            hint = (f" (it lists {len(others)} file(s) not named like an image, e.g. "
                    f"{', '.join(repr(p) for p in others[:3])})" if 0 < len(others) < n_files and len(array.values) < n_files
                    else "")
            raise InputArrayError(
                f"{array.where()} has {len(array.values)} rows but {dataset.root} lists {n_files} files{hint}; "
                "without --index, row i belongs to the i-th file in sorted path order (see README); pass --index "
                "index.csv (a 'path' column, one row per array row) to name them")
        return np.arange(n_files)
    rows = np.array([position.get(_normalise(p, dataset.root), -1) for p in array.paths], dtype=np.int64)
    unknown = np.flatnonzero(rows < 0)
    if len(unknown):
        examples = ", ".join(repr(str(array.paths[i])) for i in unknown[:3])
        raise InputArrayError(f"{array.where()}: {len(unknown)} path(s) name no listed file of {dataset.root} "
                              f"(e.g. {examples}); paths are relative to the dataset folder")
    counts = np.bincount(rows, minlength=n_files)
    if (counts > 1).any():
        twice = dataset.paths[int(np.flatnonzero(counts > 1)[0])]
        raise InputArrayError(f"{array.where()}: path {twice!r} names {int(counts.max())} rows; one row per image")
    if (counts == 0).any():
        missing = np.flatnonzero(counts == 0)
        examples = ", ".join(repr(dataset.paths[i]) for i in missing[:3])
        raise InputArrayError(
            f"{array.where()}: {len(missing)} listed file(s) have no row (e.g. {examples}); give every "
            "file a row, or scan only the listed rows with a --labels CSV")
    return rows


def _normalise(raw, root: Path) -> str | None:
    """A path of an index or parquet row as the dataset lists it (relative, POSIX), None if unusable."""
    rel, _ = _csv_relative_path(str(raw).strip(), root)
    return rel
