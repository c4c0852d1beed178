"""labelaudit: find mislabeled images and fix them.

>>> import labelaudit
>>> results = labelaudit.scan("path/to/dataset", out="path/to/scan")  # doctest: +SKIP
>>> results.sort_values("mislabel_score", ascending=False).head()   # doctest: +SKIP

``labelaudit.scan`` is :func:`labelaudit.scanner.scan`, imported on first use so that
``import labelaudit`` (and the CLI's ``--help``) does not load PyTorch.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("labelaudit")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+source"

__all__ = ["scan", "__version__"]


def __getattr__(name: str):
    if name == "scan":
        from labelaudit.scanner import scan

        return scan
    raise AttributeError(f"module 'labelaudit' has no attribute {name!r}")
