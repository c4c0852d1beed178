"""Folds: one cross-validation fold = one independent job.

* :mod:`labelaudit.folds.models` -- the compact ResNet-style CNN;
* :mod:`labelaudit.folds.training` -- :class:`FoldJob` in, train, :class:`FoldResult` (named records) out;
* :mod:`labelaudit.folds.executor` -- who runs the jobs (in process; a cluster engine plugs in here)
  and the fingerprinted on-disk store that lets a killed scan resume.
"""
