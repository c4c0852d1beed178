"""labelaudit: find mislabeled images and fix them.

>>> import labelaudit
>>> results = labelaudit.scan("path/to/dataset", out="path/to/scan")  # doctest: +SKIP
>>> results.sort_values("mislabel_score", ascending=False).head()   # doctest: +SKIP
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("labelaudit")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+source"


def scan(*args, **kwargs):
    """Scan a dataset folder for mislabeled images; see :func:`labelaudit.scan.run_scan`."""
    from labelaudit.scanner import scan as _scan

    return _scan(*args, **kwargs)


__all__ = ["scan", "__version__"]
