"""``--compile``: the fold model through torch.compile, and the fall-back to eager when compiling fails."""

import warnings

import numpy as np
import pytest
import torch

from labelaudit.folds import compiled
from labelaudit.folds.compiled import CompileFallback, CompiledModel, maybe_compile
from labelaudit.folds.models import build_model
from labelaudit.folds.training import run_fold
from test_training import job as fold_job  # noqa: F401 (the fixture)


@pytest.fixture
def job(fold_job):
    """The training tests' tiny fold, shorter and at one image size (fewer shapes to compile)."""
    fold_job.config = {**fold_job.config, "epochs": 3, "early_fraction": 0.0}
    return fold_job


def _with_compile(job, mode):
    job.config = {**job.config, "compile": mode}
    return job


def test_off_is_the_model_itself_and_a_wrapper_keeps_one_copy_of_the_parameters():
    model = build_model(3, width=4, depth=1)
    assert maybe_compile(model, "off") is model
    wrapped = maybe_compile(model, "default")
    assert isinstance(wrapped, CompiledModel)
    assert [id(p) for p in wrapped.parameters()] == [id(p) for p in model.parameters()]
    wrapped.eval()
    assert not model.training
    with pytest.raises(ValueError, match="unknown compile mode"):
        maybe_compile(model, "fastest")


def test_a_failing_compiler_falls_back_to_eager_with_one_warning_and_the_same_results(job, monkeypatch):
    eager = run_fold(job)
    calls = []

    def broken_compile(fn, mode=None):
        def run(*args):
            calls.append(mode)
            raise RuntimeError("no C++ compiler found\nmore detail")
        return run

    monkeypatch.setattr(compiled.torch, "compile", broken_compile)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fallen_back = run_fold(_with_compile(job, "reduce-overhead"))
    fallbacks = [w for w in caught if issubclass(w.category, CompileFallback)]
    assert len(fallbacks) == 1 and calls == ["reduce-overhead"]  # tried once, then eager for good
    assert "RuntimeError: no C++ compiler found" in str(fallbacks[0].message)
    for name in eager.records:
        np.testing.assert_array_equal(eager.records[name], fallen_back.records[name])


def test_a_compiled_fold_runs_through_dynamo_and_matches_eager(job, monkeypatch):
    # the eager backend traces the model with dynamo (the wiring) without paying for inductor's code generation
    traced = []
    real_compile = torch.compile

    def eager_backend_compile(fn, mode=None):
        def backend(graph, example_inputs):
            traced.append(graph)
            return graph.forward
        return real_compile(fn, backend=backend)

    monkeypatch.setattr(compiled.torch, "compile", eager_backend_compile)
    torch._dynamo.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileFallback)
        result = run_fold(_with_compile(job, "default"))
    assert traced  # the forward passes went through the compiled function
    eager = run_fold(_with_compile(job, "off"))
    np.testing.assert_allclose(result.records["holdout_probs"], eager.records["holdout_probs"], atol=1e-4)
    np.testing.assert_allclose(result.records["train_losses"], eager.records["train_losses"], atol=1e-4)
