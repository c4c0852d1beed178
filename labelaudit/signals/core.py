"""Former home of the signals, kept so ``from labelaudit.signals.core import ...`` still works.

The signals now live in :mod:`labelaudit.signals` (base, evidence, registry, compute and
one module per family: confident, dynamics, flip).
"""

from labelaudit.signals import *  # noqa: F401,F403
from labelaudit.signals import __all__  # noqa: F401
