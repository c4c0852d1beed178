"""Folds: one cross-validation fold = one independent job.

* :mod:`labelaudit.folds.records` -- :class:`FoldResult` and the declared named records it carries;
* :mod:`labelaudit.folds.models` -- the compact ResNet-style CNN;
* :mod:`labelaudit.folds.training` -- :class:`FoldJob` in, train, :class:`FoldResult` out;
* :mod:`labelaudit.folds.executor` -- who runs the jobs (in process; a cluster engine plugs in here);
* :mod:`labelaudit.folds.store` -- the fingerprinted on-disk store that lets a killed scan resume.
"""
