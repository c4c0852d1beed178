"""Signals: per-sample evidence of a wrong label, computed from the folds' records."""

from labelaudit.signals.core import *  # noqa: F401,F403
from labelaudit.signals.core import __all__  # noqa: F401
