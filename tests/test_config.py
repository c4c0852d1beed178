"""Scan settings are declared once: validation, CLI options, benchmark options and the fold fingerprint follow."""

import dataclasses
import sys
from pathlib import Path

import click
import pytest

from labelaudit.cli import main
from labelaudit.config import (BUDGETS, NOT_TRAINING_FIELDS, TRAINING_FIELDS, ScanConfig, parse_setting,
                               resolve_budget, settings)
from labelaudit.errors import SettingsError

FIELDS = [f.name for f in dataclasses.fields(ScanConfig)]


def _another_valid_value(name, base):
    """A value of field ``name`` other than ``base``'s that the field's declaration allows."""
    current = getattr(base, name)
    spec, _ = settings()[name]
    if spec.kind is str:
        candidates = ["cpu", "cuda", "cleanlab", "fp32", "large", "default"]
    elif spec.kind is bool:
        candidates = [not current]
    elif current is None:
        candidates = [0.1, 0.5]
    else:
        candidates = [current + 1, current - 1] if spec.kind is int else [current * 2, current / 2, 0.1, 0.5]
    for value in candidates:
        try:
            if value != current:
                return dataclasses.replace(base, **{name: value})
        except SettingsError:
            continue
    raise AssertionError(f"no other valid value found for {name}")


def test_the_fields_left_out_of_the_fingerprint_are_exactly_these():
    assert set(NOT_TRAINING_FIELDS) == {"device", "flag_threshold", "workers", "recipe", "budget", "compile",
                                       "min_fold_images"}  # it acts through the epochs it resolves to
    assert sorted(TRAINING_FIELDS + NOT_TRAINING_FIELDS) == sorted(FIELDS)  # every other field is hashed


@pytest.mark.parametrize("name", FIELDS)
def test_changing_a_field_changes_the_fingerprint_unless_it_is_declared_not_training(name):
    base = ScanConfig(flip=False) if name == "flip_augment" else ScanConfig()  # flip_augment needs flip off
    changed = _another_valid_value(name, base)
    if name in NOT_TRAINING_FIELDS:
        assert changed.training_fingerprint() == base.training_fingerprint()
    else:
        assert changed.training_fingerprint() != base.training_fingerprint()


def test_fingerprint_of_the_defaults_is_stable():
    """The hash of the same settings does not drift between runs or processes (a change of this
    value means every stored fold retrains: do it only when training really changes)."""
    assert ScanConfig().training_fingerprint() == "11e5d0c4f59607c6"


@pytest.mark.parametrize("name", FIELDS)
def test_declared_bounds_and_kinds_are_enforced(name):
    spec, default = settings()[name]
    bad = [object()]
    if spec.min is not None:
        bad.append(spec.min if spec.min_open else spec.min - 1)
    if spec.max is not None:
        bad.append(spec.max if spec.max_open else spec.max + 1)
    if spec.kind in (int, float):
        bad += ["3", True]
    if spec.pattern is not None:
        bad.append("gpu")
    for value in bad:
        with pytest.raises(SettingsError):
            ScanConfig(**{name: value})
    ScanConfig(**{name: default})


def test_cross_field_rule_and_none_only_where_the_default_is_none():
    with pytest.raises(SettingsError):
        ScanConfig(flip=True, flip_augment=True)
    ScanConfig(flip=False, flip_augment=True)
    progressive = ScanConfig()  # the defaults: half of 16 epochs at 3/4 size
    assert (progressive.early_epochs, progressive.early_size) == (8, 24)
    assert (ScanConfig(image_size=16, epochs=5).early_epochs, ScanConfig(image_size=16).early_size) == (2, 12)
    with pytest.raises(SettingsError):
        ScanConfig(early_fraction=1.0)  # the last epochs always train at full size
    ScanConfig(flag_threshold=None)
    with pytest.raises(SettingsError):
        ScanConfig(epochs=None)
    assert isinstance(SettingsError("x"), ValueError)  # callers catching ValueError still do


def test_parse_setting_reads_command_line_words():
    assert parse_setting("lr", "0.05") == 0.05 and parse_setting("epochs", "3") == 3
    assert parse_setting("flip", "false") is False and parse_setting("device", "cuda:1") == "cuda:1"
    for name, text in [("epochs", "0"), ("epochs", "three"), ("device", "gpu"), ("flip", "maybe")]:
        with pytest.raises(SettingsError):
            parse_setting(name, text)


def test_cli_options_are_derived_from_the_declarations():
    for command in ("scan", "demo"):
        params = {p.name: p for p in main.commands[command].params}
        for name, (spec, default) in settings().items():
            if not spec.cli:
                assert name not in params or name == "flip"
                continue
            option = params[name]
            assert option.help == spec.help
            demo_defaults = {"image_size": 16, "min_fold_images": 0}  # a quick demo: 16 px, 16 epochs
            assert option.default == (demo_defaults[name] if command == "demo" and name in demo_defaults else default)
            if isinstance(option.type, (click.IntRange, click.FloatRange)):
                assert (option.type.min, option.type.max) == (spec.min, spec.max)
                assert (option.type.min_open, option.type.max_open) == (spec.min_open, spec.max_open)
            else:
                assert spec.min is None and spec.max is None


def test_benchmark_options_are_derived_from_the_declarations():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        import detect
    finally:
        sys.path.pop(0)
    args = detect.parse_args(["--epochs", "3", "--lr", "0.05", "--device", "cpu"])
    assert (args.epochs, args.lr, args.device, args.folds) == (3, 0.05, "cpu", None)
    with pytest.raises(SystemExit):
        detect.parse_args(["--folds", "1"])


# ------------------------------------------------------------------ budgets


def test_the_small_budget_is_the_defaults_and_auto_follows_the_device():
    assert BUDGETS["small"] == {}
    assert resolve_budget(ScanConfig(), "cuda") == ScanConfig()  # the default budget is small, on any device
    assert resolve_budget(ScanConfig(budget="auto"), "cpu") == ScanConfig()  # "small" once resolved
    large = resolve_budget(ScanConfig(budget="auto"), "cuda")
    assert large.budget == "large" and {k: getattr(large, k) for k in BUDGETS["large"]} == BUDGETS["large"]
    assert large.training_fingerprint() != ScanConfig().training_fingerprint()  # the folds know their budget
    assert resolve_budget(large, "cuda") == large  # resolving twice changes nothing


def test_settings_given_by_name_or_set_in_the_config_win_over_the_budget():
    given = resolve_budget(ScanConfig(budget="large", epochs=12), "cuda", explicit={"epochs"})
    assert given.epochs == 12 and given.width == BUDGETS["large"]["width"]  # 12 is the default, yet it was asked for
    in_config = resolve_budget(ScanConfig(budget="large", width=8), "cpu")
    assert in_config.width == 8 and in_config.epochs == BUDGETS["large"]["epochs"]
    with pytest.raises(SettingsError, match="budget"):
        ScanConfig(budget="huge")


def test_small_datasets_get_more_epochs_up_to_four_times_and_larger_ones_none():
    from labelaudit.config import MAX_EPOCH_FACTOR, resolve_epochs

    cfg = ScanConfig()  # 16 epochs, 64,000 fold images
    assert resolve_epochs(cfg, 8000) is cfg and resolve_epochs(cfg, 4000) is cfg  # 16 x 4,000 = 64,000
    assert resolve_epochs(cfg, 2400).epochs == 27  # ceil(64,000 / 2,400)
    assert resolve_epochs(cfg, 800).epochs == MAX_EPOCH_FACTOR * 16 == 64  # 80 needed: capped
    assert resolve_epochs(cfg, 2400).to_dict() == {**cfg.to_dict(), "epochs": 27}  # nothing else changes
    assert resolve_epochs(ScanConfig(min_fold_images=0), 10) == ScanConfig(min_fold_images=0)
    assert resolve_epochs(ScanConfig(epochs=4, min_fold_images=1000), 100).epochs == 10
    assert "min_fold_images" not in TRAINING_FIELDS  # the epochs it resolves to are fingerprinted instead
