"""The recipe a user gets: the paper's by default, the spec's `train:` over it, flags over both,
and the learning rate the paper's staircase gives at the iterations that matter."""
from __future__ import annotations

import itertools
import math

import pytest

import archcompiler
from runtime.errors import RuntimeUsageError
from runtime.train.config import MODERN, modern, paper, resolve
from runtime.train.schedule import Schedule, from_config
from tests.conftest import PAPER_SPECS, spec_path


@pytest.mark.parametrize("name", PAPER_SPECS)
def test_paper_specs_resolve_to_the_paper_recipe(name):
    config = resolve(archcompiler.compile(spec_path(name)).train)
    assert (config.optimizer, config.lr, config.lr_schedule, config.lr_decay, config.lr_decay_every) == ("adam", 1e-3, "step", 0.96, 1000)
    assert (config.batch_size, config.epochs, config.label_smoothing, config.augment_flip) == (32, 25, 0.0, False)


def test_paper_learning_rate_at_iterations_0_999_1000_25000():
    config = resolve(archcompiler.compile(spec_path("no_attention")).train)
    schedule = from_config(config, steps_per_epoch=3125)  # Tiny ImageNet at batch 32
    assert schedule(0) == 1e-3
    assert schedule(999) == 1e-3
    assert schedule(1000) == pytest.approx(0.96e-3, rel=1e-12)
    assert schedule(25000) == pytest.approx(1e-3 * 0.96**25, rel=1e-12)


def test_flags_override_spec_which_overrides_defaults():
    config = resolve({"lr": 0.01, "batch_size": 64, "augment": {"flip": True}}, {"lr": 0.5, "epochs": None})
    assert config.lr == 0.5  # the flag wins
    assert config.batch_size == 64 and config.augment_flip  # the spec wins over the defaults
    assert config.epochs == 25  # a flag left out (None) changes nothing


def test_named_recipe_overrides_the_spec_but_keeps_its_epochs():
    config = resolve({"epochs": 7, "lr": 0.01, "optimizer": "sgd"}, {"batch_size": 256}, recipe="modern")
    assert config.recipe == "modern" and config.optimizer == "adamw" and config.lr == MODERN["lr"]
    assert config.epochs == 7 and config.batch_size == 256
    back = resolve({"optimizer": "sgd", "lr": 0.01}, recipe="paper")
    assert (back.optimizer, back.lr) == (paper().optimizer, paper().lr)


def test_modern_recipe_warms_up_then_decays_to_zero():
    config = modern()
    assert config.optimizer == "adamw" and config.label_smoothing > 0 and config.augment_flip and config.batch_size > 32
    schedule = from_config(config, steps_per_epoch=100)
    warm = config.warmup_for(100)
    assert warm == 200
    assert schedule(0) < schedule(warm // 2) < schedule(warm - 1) == pytest.approx(config.lr)
    assert schedule(warm + 10) < config.lr
    assert schedule(config.epochs * 100) == pytest.approx(0.0, abs=1e-12)


def test_cosine_is_monotone_after_warmup():
    schedule = Schedule("cosine", 1.0, total_steps=1000, warmup_steps=100)
    rates = [schedule(s) for s in range(100, 1001)]
    assert all(a >= b for a, b in itertools.pairwise(rates)) and math.isclose(rates[0], 1.0)


@pytest.mark.parametrize("bad", [{"batch_size": 0}, {"lr": -1.0}, {"optimizer": "lamb"}, {"device": "tpu"}, {"amp": "fp8"}])
def test_bad_values_are_usage_errors(bad):
    with pytest.raises(RuntimeUsageError):
        resolve({}, bad)
