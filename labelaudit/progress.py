"""Progress bars (tqdm) that stay readable in a terminal and short in a log file."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

__all__ = ["progress_bar"]


def progress_bar(*, enabled: bool = True, **kwargs) -> tqdm:
    """A tqdm bar on stderr; redraws at most every 0.5 s on a terminal, every 30 s otherwise."""
    interactive = sys.stderr.isatty()
    kwargs.setdefault("mininterval", 0.5 if interactive else 30.0)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(file=sys.stderr, disable=not enabled, **kwargs)
