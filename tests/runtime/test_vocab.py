"""The runtime's vocabulary (runtime/vocab.py) is the one definition the CLI, trainer, bench and
schema read: adding an optimizer is one entry there. It must load without torch."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from archcompiler.cli import bench as cli_bench
from runtime import vocab
from runtime.errors import RuntimeUsageError
from runtime.train.config import TrainConfig
from tests.conftest import ROOT


def test_importable_without_torch():
    code = ("import sys\nfrom runtime import vocab\nassert vocab.state_slots('adamw') == 2 and vocab.state_slots('sgd') == 1\n"
            "assert vocab.state_slots('sgd', momentum=0) == 0\nassert 'torch' not in sys.modules, 'torch was imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_one_entry_adds_an_optimizer_everywhere(monkeypatch):
    monkeypatch.setitem(vocab.OPTIMIZERS, "rmsprop", vocab.Optimizer("RMSprop", 1, True, "RMSprop"))
    config = TrainConfig(optimizer="rmsprop", momentum=0.5)  # the trainer accepts it ...
    opt = vocab.make_optimizer(config.optimizer, [torch.nn.Parameter(torch.zeros(2))], 0.1, 0.0, config.momentum)
    assert isinstance(opt, torch.optim.RMSprop) and opt.defaults["momentum"] == 0.5  # ... builds it ...
    args = cli_bench.parser().parse_args(["x.yaml", "--optimizer", "rmsprop"])  # ... and the bench offers it
    assert args.optimizer == "rmsprop"


def test_the_schema_and_the_defaults_read_the_vocabulary():
    from archcompiler.frontend.schema import TRAIN_SCHEMA

    assert TRAIN_SCHEMA["properties"]["optimizer"]["enum"] == list(vocab.OPTIMIZERS)
    assert (vocab.default_amp("cuda"), vocab.default_amp("cpu")) == ("bf16", "off")
    assert (vocab.default_compile("cuda"), vocab.default_compile("cpu")) == (True, False)
    sgd = vocab.make_optimizer("sgd", [torch.nn.Parameter(torch.zeros(1))], 0.1)
    assert sgd.defaults["momentum"] == vocab.DEFAULT_MOMENTUM == TrainConfig().momentum  # the bench's sgd is the trainer's
    params = [torch.nn.Parameter(torch.zeros(1))]
    for name in vocab.OPTIMIZERS:  # on CUDA one kernel updates every parameter; elsewhere torch's default
        assert vocab.make_optimizer(name, params, 0.1, device_type="cuda").defaults["fused"] is True
        assert not vocab.make_optimizer(name, params, 0.1).defaults.get("fused")
    with pytest.raises(RuntimeUsageError, match="unknown optimizer 'lion'; choose from adam, adamw, sgd"):
        vocab.make_optimizer("lion", [], 0.1)


def test_a_resumed_optimizer_keeps_this_machines_implementation():
    """A run saved on CUDA (fused) and resumed on the CPU, or the other way round, updates the
    way this machine's optimizer was built to, with the saved moments."""
    from runtime.train.resume import load_optimizer_state

    params = [torch.nn.Parameter(torch.ones(3))]
    saved = vocab.make_optimizer("adam", params, 0.1, device_type="cuda")  # fused, as on a GPU
    params[0].grad = torch.ones(3)
    saved.step()
    here = vocab.make_optimizer("adam", params, 0.1)
    load_optimizer_state(here, saved.state_dict())
    assert not here.param_groups[0]["fused"] and torch.equal(here.state[params[0]]["exp_avg"], saved.state[params[0]]["exp_avg"])
