"""The review map: a 2-D projection of a scan's embeddings, computed once and cached.

t-SNE (scikit-learn) draws clusters that a linear projection mixes, but it costs
O(n log n) with a large constant: ~5 s for 2,000 points on one busy CPU core. (It runs with
one OpenMP thread: on a shared 2-core machine the default threads spin at each barrier and
the same fit took 25 s.) So it is fitted
on at most :data:`FIT_MAX` samples (a random subset, after PCA to :data:`PCA_DIMS`
dimensions), and every other sample is placed at the distance-weighted mean of its
:data:`PLACE_K` nearest fitted samples (in the PCA space) -- a 100,000-sample scan costs
the t-SNE of 2,000 points plus one nearest-neighbour pass. The result, scaled to [0, 1], is
written beside the embeddings (:attr:`labelaudit.scandir.ScanDir.MAP`) with the size and
time of the embeddings file it was computed from, and recomputed when those change.
"""

from __future__ import annotations

import io
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labelaudit.errors import MapUnavailable
from labelaudit.fsutil import atomic_write
from labelaudit.scandir import ScanDir

__all__ = ["FIT_MAX", "PCA_DIMS", "PLACE_K", "MapData", "compute_map", "load_map", "write_map", "MapCache"]

FIT_MAX = 2000
PCA_DIMS = 30
PLACE_K = 8


@dataclass
class MapData:
    """Positions of the samples (row ``i`` = sample ``i``), in [0, 1]², and how they were made."""

    xy: np.ndarray  # float32 (n, 2)
    method: str
    seconds: float
    source: dict


def _pca(x: np.ndarray, dims: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    dims = min(dims, x.shape[1], max(x.shape[0] - 1, 1))
    return PCA(dims, random_state=0).fit_transform(x).astype(np.float32)


def _tsne(x: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max((len(x) - 1) / 3.0, 1.0)))
    return TSNE(2, init="pca", perplexity=perplexity, max_iter=500, random_state=seed,
                n_jobs=1).fit_transform(x).astype(np.float32)


def _place(x: np.ndarray, fit: np.ndarray, fit_xy: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Each row of ``x`` at the distance-weighted mean position of its nearest rows of ``fit``."""
    out = np.empty((len(x), 2), dtype=np.float32)
    fit_sq = (fit ** 2).sum(axis=1)
    k = min(PLACE_K, len(fit))
    for start in range(0, len(x), chunk):
        part = x[start:start + chunk]
        d2 = (part ** 2).sum(axis=1)[:, None] - 2 * part @ fit.T + fit_sq[None, :]
        idx = np.argpartition(d2, k - 1, axis=1)[:, :k]
        w = 1.0 / (np.sqrt(np.maximum(np.take_along_axis(d2, idx, axis=1), 0)) + 1e-6)
        out[start:start + chunk] = (fit_xy[idx] * w[..., None]).sum(axis=1) / w.sum(axis=1, keepdims=True)
    return out


def _unit(xy: np.ndarray) -> np.ndarray:
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    return ((xy - lo) / np.where(hi - lo > 0, hi - lo, 1)).astype(np.float32)


def compute_map(embeddings: np.ndarray, *, seed: int = 0, fit_max: int = FIT_MAX) -> tuple[np.ndarray, str]:
    """2-D positions in [0, 1]² of ``embeddings`` (n, d) and a description of the method."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _compute_map(np.asarray(embeddings, dtype=np.float32), seed, fit_max)


def _compute_map(x: np.ndarray, seed: int, fit_max: int) -> tuple[np.ndarray, str]:
    n = len(x)
    if n < 4:
        return _unit(np.c_[np.arange(n), np.zeros(n)].astype(np.float32)), "trivial (fewer than 4 samples)"
    x = _pca(x - x.mean(axis=0), PCA_DIMS)
    if n <= fit_max:
        return _unit(_tsne(x, seed)), f"t-SNE of PCA-{x.shape[1]}"
    rng = np.random.default_rng(seed)
    fit_idx = np.sort(rng.choice(n, fit_max, replace=False))
    fit_xy = _tsne(x[fit_idx], seed)
    xy = _place(x, x[fit_idx], fit_xy)
    xy[fit_idx] = fit_xy
    return _unit(xy), f"t-SNE of PCA-{x.shape[1]} on {fit_max:,} samples, the others placed by {PLACE_K} nearest"


def _source(path: Path) -> dict:
    st = path.stat()
    return {"file": path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def write_map(scan: ScanDir, xy: np.ndarray, method: str, seconds: float, source: dict | None = None) -> Path | None:
    """Cache ``xy`` in ``scan``'s map file, stamped with the embeddings it was made from.

    ``source``: the stamp of the embeddings file taken before reading it; when the file has changed
    since (a re-scan replaced it while the map was computed), nothing is written and None returned.
    """
    if source is not None and _source(scan.embeddings) != source:
        return None
    meta = {"method": method, "seconds": round(seconds, 3), "source": source or _source(scan.embeddings)}

    def write(fh) -> None:
        buf = io.BytesIO()
        np.savez(buf, xy=np.asarray(xy, dtype=np.float32), meta=np.array(json.dumps(meta)))
        fh.write(buf.getvalue())

    return atomic_write(scan.map, write, binary=True)


def load_map(scan: ScanDir) -> MapData | None:
    """The cached map if it was made from the current embeddings, else None."""
    if not scan.map.is_file() or not scan.embeddings.is_file():
        return None
    try:
        with np.load(scan.map, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            xy = data["xy"].astype(np.float32)
    except (OSError, ValueError, KeyError):
        return None
    if meta.get("source") != _source(scan.embeddings):
        return None
    return MapData(xy=xy, method=meta.get("method", ""), seconds=float(meta.get("seconds", 0)), source=meta["source"])


class MapCache:
    """The map of one scan for an app: loaded from the cache file, else computed once in the background.

    :meth:`get` never blocks on the computation: it returns None (and starts it) until the
    map is ready; :attr:`error` holds a failure's message.
    """

    def __init__(self, scan: ScanDir) -> None:
        self.scan = scan
        self._data: MapData | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    @property
    def available(self) -> bool:
        return self.scan.embeddings.is_file()

    def get(self, *, start: bool = True) -> MapData | None:
        """The map, or None while it is computed (started here unless ``start`` is False).

        Raises
        ------
        MapUnavailable
            The scan stored no embeddings.
        """
        if self._data is not None:
            return self._data
        if not self.available:
            raise MapUnavailable("this scan stored no embeddings (embeddings.npy), so it has no map")
        with self._lock:
            if self._data is None:
                self._data = load_map(self.scan)
            if self._data is None and start and self._thread is None:
                self._thread = threading.Thread(target=self._compute, name="labelaudit-map", daemon=True)
                self._thread.start()
        return self._data

    def wait(self, timeout: float | None = None) -> MapData | None:
        """Block until the map is ready (or ``timeout`` seconds); return it."""
        self.get()
        if self._thread is not None:
            self._thread.join(timeout)
        return self._data

    def _compute(self) -> None:
        try:
            t0 = time.perf_counter()
            source = _source(self.scan.embeddings)  # before reading: a re-scan may replace the file meanwhile
            emb = np.load(self.scan.embeddings, mmap_mode="r")
            xy, method = compute_map(np.asarray(emb, dtype=np.float32))
            seconds = time.perf_counter() - t0
            try:
                write_map(self.scan, xy, method, seconds, source)  # not over another scan's embeddings
            except OSError:
                pass  # a read-only scan folder: keep the map in memory
            self._data = MapData(xy=xy, method=method, seconds=seconds, source=source)
        except Exception as exc:  # noqa: BLE001 -- reported on the page instead of killing the thread silently
            self.error = f"{type(exc).__name__}: {exc}"
