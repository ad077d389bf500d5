"""The CUDA paths: the device-side loader, bf16 autocast, torch.compile (default and
reduce-overhead), exact resume on CUDA, and the NaN guard's windowed check.

Marked `cuda` and skipped without a GPU; the GPU programme runs them in its bench phase
(`bench/gpu/run.sh bench` runs `pytest -m cuda`). Small models and sets, so the whole file
takes about a minute on a GPU, most of it compiling.
"""
from __future__ import annotations

import os

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS; must precede CUDA's start

import pytest
import torch
from torch import nn

from runtime.data import Augment, BatchLoader
from runtime.train import checkpoint
from runtime.train.loop import Diverged, Interrupted, fit
from tests.runtime.train_helpers import config, small_data, tiny_model

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def loaders(device, **kw):
    train, _ = small_data()
    common = dict(batch_size=16, seed=3, mean=train.channel_mean(), std=train.channel_std(), rank=0, world_size=1, **kw)
    return BatchLoader(train.images, train.labels, device="cpu", **common), BatchLoader(train.images, train.labels, device=device, **common)


@pytest.mark.parametrize("augment", [None, Augment(flip=True, crop_padding=4)])
def test_loader_on_the_gpu_gives_the_cpu_batches_bit_for_bit(augment):
    cpu, gpu = loaders("cuda", augment=augment)
    assert gpu.images.is_cuda
    for (xc, yc), (xg, yg) in zip(cpu.batches(1), gpu.batches(1)):
        assert xg.is_cuda and xg.dtype == torch.float32 and yg.is_cuda
        assert torch.equal(xc, xg.cpu()) and torch.equal(yc, yg.cpu())


def test_loader_batches_never_wait_for_the_gpu():
    """After the epoch's order is on the device, a batch (augmented too) queues work and
    returns: any host-device synchronisation here would stall every training step."""
    _, gpu = loaders("cuda", augment=Augment(flip=True, crop_padding=4))
    batches = gpu.batches(1)
    next(batches)  # the epoch's order goes to the device once, here
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(4):
            next(batches)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def run(tmp_path, name="run", model=None, resume=False, on_step=None, **cfg):
    train, val = small_data()
    cfg = {"device": "cuda", "lr_decay_every": 4, "lr_decay": 0.5, **cfg}
    return fit(model or (lambda device: tiny_model().to(device)), train, val, config(**cfg), tmp_path / name,
               resume=resume, on_step=on_step, extra_meta={"model": "tiny"})


def test_bf16_autocast_trains_and_reports_it(tmp_path):
    seen = []
    model = tiny_model().cuda()
    model[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    summary = run(tmp_path, model=lambda device: model, amp="bf16", compile=False)
    assert summary["amp"] == "bf16" and summary["device"].startswith("cuda")
    assert seen and set(seen) == {torch.bfloat16}  # the conv really ran in bf16
    assert summary["final_val_loss"] == summary["final_val_loss"]  # finite, not NaN


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_training_matches_eager_and_trains(tmp_path, mode):
    import archcompiler
    from tests.runtime.train_helpers import TINY_SPEC

    net = archcompiler.compile(TINY_SPEC)
    kwargs = {} if mode == "default" else {"mode": mode}

    def factory(device):
        return net.module(seed=0, compile=True, channels_last=True, device=device, **kwargs)

    summary = run(tmp_path, model=factory, amp="bf16", channels_last=True)
    assert summary["compile"] is True and summary["status"] == "complete"
    eager = net.module(seed=0, device="cuda").eval()
    compiled = net.module(seed=0, compile=True, device="cuda", **kwargs).eval()
    x = torch.randn(8, 3, 64, 64, device="cuda")
    with torch.no_grad():
        torch.compiler.cudagraph_mark_step_begin()
        # Both run convs and the matmul in TF32 (fit set it), in different orders: close, not equal.
        torch.testing.assert_close(compiled(x).clone(), eager(x), rtol=1e-2, atol=1e-2)


def test_training_under_cuda_graphs_marks_every_step_and_validation_batch(tmp_path):
    """--compile-mode reduce-overhead: each training step and each validation batch is marked as
    a new CUDA-graph step, so nothing reads an output that the next replay overwrote. A last
    training batch of another size, and validation at its own batch size, record graphs of
    their own. The run ends as the default compile's does."""
    common = dict(amp="bf16", channels_last=True, compile=True, batch_size=20, eval_batch_size=32, epochs=2)  # 96 = 4 x 20 + 16
    graphs = run(tmp_path, "graphs", model=tiny_model(), compile_mode="reduce-overhead", **common)
    plain = run(tmp_path, "plain", model=tiny_model(), **common)
    assert graphs["status"] == "complete" and graphs["compile_mode"] == "reduce-overhead"
    assert graphs["final_val_loss"] == pytest.approx(plain["final_val_loss"], rel=2e-2)


def test_benchmark_steps_run_under_cuda_graphs():
    """archc bench's reduce-overhead rows: train and infer steps replayed as CUDA graphs."""
    from runtime.bench.steps import make_step

    for mode in ("train", "infer"):
        model = tiny_model().cuda().to(memory_format=torch.channels_last)
        net = torch.compile(model, mode="reduce-overhead")
        step = make_step(net, model, mode, 16, (3, 64, 64), 10, torch.device("cuda"), amp="bf16", channels_last=True, cudagraphs=True)
        before = [p.detach().clone() for p in model.parameters()]
        for _ in range(4):
            step()
        torch.cuda.synchronize()
        changed = any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
        assert changed == (mode == "train")


def test_a_reduce_overhead_bench_row_ran_under_cuda_graphs_and_says_what_it_cannot_measure():
    """Inductor only warns when it declines to capture a graph: the row must count that (none
    here), and carry no memory figure, since a replay allocates nothing the allocator sees."""
    from runtime.bench import BenchConfig, Workload, run as bench

    load = Workload("tiny", "emitted", tiny_model, (3, 64, 64), 10, 1, 3)
    config = BenchConfig(modes=("train",), batch_sizes=(16,), compiled=(False, True), compile_kwargs={"mode": "reduce-overhead"},
                         device="cuda", amp="bf16", channels_last=True, warmup=3, iters=3)
    eager, graphs = bench([load], config).rows
    assert graphs.compiled and graphs.images_per_s and graphs.peak_mem_bytes is None
    assert "memory not measured" in graphs.note and "skipped CUDA graphs" not in graphs.note, graphs.note
    assert eager.peak_mem_bytes and "CUDA graphs" not in eager.note


def factory(fast: bool):
    """The tiny model on the device; for the fast path also channels_last and compiled, as archc train does on CUDA."""
    def build(device):
        model = tiny_model().to(device)
        return torch.compile(model.to(memory_format=torch.channels_last)) if fast else model
    return build


@pytest.mark.parametrize("fast", [False, True], ids=["fp32-eager", "bf16-compiled-channels-last"])
def test_resume_on_cuda_is_bitwise_identical(tmp_path, fast):
    import signal

    def ctrl_c_at_step_8(step):  # mid-epoch 2: loader position, Adam moments and the CUDA RNG all matter
        if step == 8:
            signal.raise_signal(signal.SIGINT)

    extra = {"amp": "bf16", "channels_last": True} if fast else {"amp": "off"}
    # cuDNN and cuBLAS pick deterministic kernels, as a bitwise check needs; ops with no
    # deterministic version only warn (the comparison below is the judge).
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        run(tmp_path, "straight", model=factory(fast), **extra)
        with pytest.raises(Interrupted):
            run(tmp_path, "stopped", model=factory(fast), on_step=ctrl_c_at_step_8, **extra)
        run(tmp_path, "stopped", model=factory(fast), resume=True, **extra)
    finally:
        torch.use_deterministic_algorithms(False)
    a, b = checkpoint.load(tmp_path / "straight").weights, checkpoint.load(tmp_path / "stopped").weights
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class NaNAfter(nn.Module):
    def __init__(self, bad: int):
        super().__init__()
        self.net, self.bad, self.calls = tiny_model(), bad, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
        out = self.net(x)
        return out * float("nan") if self.training and self.calls >= self.bad else out


def test_nan_guard_on_cuda_names_the_step_and_saves_nothing_after_it(tmp_path):
    """On CUDA the losses are checked in windows (one sync per window), yet the error still
    names the first bad step and no checkpoint is written after it."""
    with pytest.raises(Diverged, match=r"became nan at step 9 \(epoch 2\).*last good checkpoint is .*step-0000006"):
        run(tmp_path, model=lambda device: NaNAfter(bad=9).to(device), compile=False)
    ckpt = checkpoint.load(tmp_path / "run")
    assert ckpt.meta["step"] == 6 and all(torch.isfinite(w.float()).all() for w in ckpt.weights.values())


@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_saved_tensors_on_cuda_are_what_the_memory_model_predicts(amp):
    """The rules that differ on CUDA: dropout keeps a bool mask, and autocast runs layer and
    group norm in fp32 on a cast copy of their bf16 input (reflect pads stay bf16 there)."""
    from tests.test_memory import measured_saved, predicted_saved
    from tests.test_primitives_v2 import net

    compiled = net("""
        a: {type: conv, out: 8}
        ln: {type: layernorm}
        b: {type: conv, out: 8}
        gn: {type: groupnorm, groups: 2}
        c: {type: conv, out: 8}
        p: {type: pad, pad: 1, mode: reflect}
        d: {type: conv, out: 8}
        drop: {type: dropout, p: 0.5}
        e: {type: conv, out: 4}
    """)
    assert predicted_saved(compiled, 2, amp, "cuda") == measured_saved(compiled, 2, amp, "cuda")
