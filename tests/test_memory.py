"""The memory model (passes/memory.py, docs/memory.md) against what PyTorch does.

What autograd saves is measured exactly with saved_tensors_hooks on the emitted module,
counting each storage once and leaving out the module's own parameters and buffers. Every
saved tensor's size is affine in the batch (per-image activations plus per-batch statistics),
so batches 1 and 2 determine batch 32 exactly; the slow test measures 32 itself.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import archcompiler
from archcompiler.blocks.activation import MODULES
from archcompiler.blocks.registry import Block
from archcompiler.driver import builtin_registry, check_text
from archcompiler.cli.main import main
from archcompiler.passes.memory import largest_batch, largest_conv_copies, predict
from archcompiler.passes.roofline import predict_seconds, step_costs
from runtime.bench.memory import step_tensor_peak
from tests.conftest import ALL_SPECS, HEAVY_SPECS, TEST_SPECS, spec_path

TOLERANCE = 0.10  # the target; the rules are in fact exact on every spec today


def measured_saved(net, batch: int, amp: str, device: str = "cpu") -> int:
    """Bytes of the distinct storages autograd saves in one training forward."""
    model = net.module(seed=0).to(device)
    model.train()
    own = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    seen = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in own:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    x = torch.randn(batch, *net.input_shape, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast(device, torch.bfloat16, enabled=amp == "bf16"):
        out = model(x)
    del out
    return sum(seen.values())


def predicted_saved(net, batch: int, amp: str, device: str = "cpu") -> int:
    return predict(net.graph, net.result.registry, batch, amp=amp, device=device).saved_activations_bytes


def close(predicted: int, measured: int) -> bool:
    return abs(predicted - measured) <= TOLERANCE * measured


# bf16 on a CPU without bf16 units is slow: the 224-pixel examples' bf16 cases are marked slow.
CASES = [pytest.param(s, amp, marks=[pytest.mark.slow] if (amp == "bf16" and ("examples" in s or "mobilenet" in s)) or Path(s).stem in HEAVY_SPECS else [])
         for s in ALL_SPECS + TEST_SPECS for amp in ("off", "bf16")]


@pytest.mark.parametrize("spec,amp", CASES)
def test_saved_activations_match_autograd(spec, amp):
    net = archcompiler.compile(spec)
    one, two = measured_saved(net, 1, amp), measured_saved(net, 2, amp)
    assert close(predicted_saved(net, 1, amp), one), (predicted_saved(net, 1, amp), one)
    assert close(predicted_saved(net, 2, amp), two), (predicted_saved(net, 2, amp), two)
    at_32 = one + 31 * (two - one)
    assert close(predicted_saved(net, 32, amp), at_32), (predicted_saved(net, 32, amp), at_32)


# efficientnet_v2_s at 384 x 384 keeps 13.5 GiB for backward at batch 32: more than a
# 24 GiB test machine holds beside autograd's own copies. Its batch 1 and 2 cases stand.
AT_32 = [s for s in ALL_SPECS if "efficientnet_v2_s" not in s]


@pytest.mark.slow
@pytest.mark.parametrize("amp", ["off", "bf16"])
@pytest.mark.parametrize("spec", AT_32)
def test_saved_activations_match_autograd_at_batch_32(spec, amp):
    net = archcompiler.compile(spec)
    assert close(predicted_saved(net, 32, amp), measured_saved(net, 32, amp))


@pytest.mark.parametrize("mode,optimizer,amp", [("train", "sgd", "off"), ("train", "adamw", "bf16"), ("infer", "sgd", "off"),
                                                pytest.param("train", "adam", "off", marks=pytest.mark.slow)])
def test_peak_of_a_step_within_10_percent(mode, optimizer, amp):
    net = archcompiler.compile(spec_path("no_attention"))
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, *net.input_shape, generator=gen), torch.randint(0, 200, (2,), generator=gen)
    measured = step_tensor_peak(net.module(seed=0), x, y, mode, optimizer, amp).peak_bytes
    predicted = predict(net.graph, net.result.registry, 2, mode, optimizer, amp).peak_bytes
    assert close(predicted, measured), (predicted, measured)


SEVERAL_OUTPUTS = Path(__file__).parent / "specs" / "several_outputs.yaml"


@pytest.mark.parametrize("mode,optimizer,amp", [("train", "sgd", "off"), ("infer", "sgd", "off"), ("train", "adamw", "bf16")])
def test_blocks_with_several_outputs_keep_each_output_alive(mode, optimizer, amp):
    """The emitted forward unpacks a block's outputs into variables of their own (`c3, c4, x =
    self.body(x)`), which live longer than the same layers written in one graph. What they
    hold beyond the flat graph is predicted to the byte. (A forward pass, and a bf16 step, of
    this topology peak 10-11% above the prediction in both forms: oneDNN's transient copies
    inside one convolution, which the model leaves out, not the blocks; docs/memory.md.)"""
    peaks = {}
    for path in (SEVERAL_OUTPUTS, SEVERAL_OUTPUTS.with_name("several_outputs_flat.yaml")):
        net = archcompiler.compile(str(path))
        gen = torch.Generator().manual_seed(0)
        x, y = torch.randn(4, *net.input_shape, generator=gen), torch.randint(0, 10, (4,), generator=gen)
        assert close(predicted_saved(net, 4, amp), measured_saved(net, 4, amp))
        measured = step_tensor_peak(net.module(seed=0), x, y, mode, optimizer, amp).peak_bytes
        peaks[path.stem] = (predict(net.graph, net.result.registry, 4, mode, optimizer, amp).peak_bytes, measured)
    (p_blocks, m_blocks), (p_flat, m_flat) = peaks.values()
    assert p_blocks - p_flat == m_blocks - m_flat, peaks
    if (mode, amp) == ("train", "off"):
        assert close(p_blocks, m_blocks), peaks


def test_every_primitive_declares_what_it_saves():
    missing = [b.name for b in builtin_registry() if not b.is_composite and type(b).saved is Block.saved]
    assert not missing, f"block types without a `saved` rule: {missing}"


def test_a_storage_saved_twice_counts_once():
    """conv -> relu -> conv: the ReLU saves its output and the second conv saves the same
    tensor as its input; it is one storage."""
    text = "archc: 1\nname: twice\ninput: [3, 8, 8]\nnodes:\n  a: {type: conv, out: 4}\n  r: {type: activation}\n  b: {type: conv, out: 4}\n"
    net = archcompiler.compile(text)
    relu_out = 4 * 6 * 6 * 4
    # the input (saved by a) and the ReLU's output (saved by r and b), in fp32
    assert predicted_saved(net, 1, "off") == 3 * 8 * 8 * 4 + relu_out == measured_saved(net, 1, "off")
    assert net.graph.nodes["b"].meta["saved_activations_bytes"] == 0  # owned by r, which saved it first


def check_json(capsys, *args) -> dict:
    assert main(["check", spec_path("attn_simple"), "--format", "json", *args]) == 0
    return json.loads(capsys.readouterr().out)["files"][0]


def test_check_json_memory_contract(capsys):
    entry = check_json(capsys, "--batch-size", "16", "--optimizer", "adam", "--expand")
    m = entry["memory"]
    assert {"params_bytes", "grads_bytes", "optimizer_bytes", "saved_activations_bytes", "peak_bytes",
            "batch_size", "mode", "amp", "optimizer"} <= set(m)
    assert all(isinstance(m[k], int) for k in m if k.endswith("_bytes"))
    assert (m["batch_size"], m["mode"], m["amp"], m["optimizer"]) == (16, "train", "off", "adam")
    assert m["params_bytes"] == 4 * entry["totals"]["params"] == m["grads_bytes"]
    assert m["optimizer_bytes"] == 2 * m["params_bytes"]  # Adam's two moments
    top = [row for row in entry["layers"] if row["depth"] == 0]
    assert sum(row["saved_activations_bytes"] for row in top) == m["saved_activations_bytes"]
    attn = next(i for i, row in enumerate(entry["layers"]) if row["name"] == "attn")
    end = next(i for i in range(attn + 1, len(entry["layers"])) if entry["layers"][i]["depth"] == 0)
    inner = [row for row in entry["layers"][attn + 1:end] if row["depth"] == 1]
    assert sum(row["saved_activations_bytes"] for row in inner) == entry["layers"][attn]["saved_activations_bytes"]
    assert m["peak_bytes"] > m["params_bytes"] + m["optimizer_bytes"] + m["saved_activations_bytes"] // 2


def test_check_infer_mode_keeps_nothing_for_backward(capsys):
    train = check_json(capsys, "--batch-size", "16")["memory"]
    sgd = check_json(capsys, "--batch-size", "16", "--optimizer", "sgd")["memory"]
    infer = check_json(capsys, "--batch-size", "16", "--mode", "infer")["memory"]
    assert (infer["grads_bytes"], infer["optimizer_bytes"], infer["saved_activations_bytes"], infer["optimizer"]) == (0, 0, 0, None)
    assert train["optimizer"] == "adam"  # the spec's own recipe
    assert sgd["optimizer_bytes"] == sgd["params_bytes"]  # the momentum buffer
    assert infer["params_bytes"] < infer["peak_bytes"] < sgd["peak_bytes"] < train["peak_bytes"]


def test_check_text_shows_the_memory(capsys):
    assert main(["check", spec_path("no_attention"), "--batch-size", "8", "--amp", "bf16"]) == 0
    out = capsys.readouterr().out
    assert "Saved" in out.splitlines()[1]
    assert "memory (train, batch 8, amp bf16, adam)" in out  # the spec's own optimizer and "predicted peak of a training step" in out


@pytest.mark.parametrize("args", [["--amp", "bf16"], ["--batch-size", "0"], ["--batch-size", "x"]])
def test_check_memory_flags_are_checked(args, capsys):
    with pytest.raises(SystemExit) as e:
        main(["check", spec_path("no_attention"), *args])
    assert e.value.code == 2


@pytest.mark.parametrize("mode,optimizer,amp", [("train", "adam", "off"), ("train", "sgd", "bf16"), ("infer", "sgd", "off")])
def test_largest_batch_is_the_last_that_fits(mode, optimizer, amp):
    net = archcompiler.compile(spec_path("attn_reduction"))
    graph, registry = net.graph, net.result.registry
    budget = 3 * 2**30

    copies = largest_conv_copies(graph, registry, amp)  # room the CPU leaves for oneDNN's transient copies
    assert copies > 0

    def peak(b, device="cpu"):
        return predict(graph, registry, b, mode, optimizer, amp, device).peak_bytes + (b * copies if device == "cpu" else 0)

    batch, memory = largest_batch(graph, registry, budget, mode, optimizer, amp)
    assert memory.peak_bytes + batch * copies == peak(batch) <= budget < peak(batch + 1)
    assert largest_batch(graph, registry, peak(1) - 1, mode, optimizer, amp) is None
    assert largest_batch(graph, registry, budget, mode, optimizer, amp, cap=10)[0] == 10
    batch, memory = largest_batch(graph, registry, budget, mode, optimizer, amp, "cuda")  # no such copies there
    assert memory.peak_bytes == peak(batch, "cuda") <= budget < peak(batch + 1, "cuda")


def test_bench_batch_size_auto_prints_its_prediction(monkeypatch, capsys):
    from archcompiler.cli import bench

    monkeypatch.setenv("ARCHC_MEMORY_LIMIT", "400MiB")
    args = bench.parser().parse_args([spec_path("no_attention"), "--batch-size", "auto", "--mode", "train", "--optimizer", "sgd"])
    loads = bench.workloads(args.specs, False, args.optimizer)
    batch = bench.auto_batch_sizes(args, loads)
    net = archcompiler.compile(spec_path("no_attention"))
    want, _ = largest_batch(net.graph, net.result.registry, int(400 * 2**20 * 0.85), "train", "sgd", "off", "cpu")
    assert batch == want
    assert f"batch size auto: {want} (train, sgd, amp off)" in capsys.readouterr().err


@pytest.mark.slow
def test_train_batch_size_auto_runs_the_batch_it_chose(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ARCHC_MEMORY_LIMIT", "200MiB")
    out = tmp_path / "run"
    assert main(["train", spec_path("no_attention"), "--data", "synthetic:train=64,val=16", "--max-steps", "1",
                 "--device", "cpu", "--batch-size", "auto", "--out", str(out), "--no-progress"]) == 0
    said = capsys.readouterr().err
    chosen = int(said.split("batch size auto: ")[1].split()[0])
    assert 1 < chosen < 64  # the limit chose it, not the training set's size
    assert json.loads((out / "config.json").read_text())["batch_size"] == chosen


def test_roofline_counts_every_layer_and_the_update():
    net = archcompiler.compile(spec_path("no_attention"))
    costs = step_costs(net.graph, net.result.registry, 8, "train", "off", "adam")
    forward = [c for c in costs if not c.name.endswith("(backward)") and c.name != "optimizer"]
    assert sum(c.flops for c in forward) == 8 * net.totals["flops"]
    assert costs[-1].name == "optimizer" and costs[-1].bytes == 13 * 4 * net.totals["params"]
    # twice the bandwidth halves a memory-bound step; infinite compute leaves only the bytes
    slow, _ = predict_seconds(costs, 1e30, 1e9)
    fast, bound = predict_seconds(costs, 1e30, 2e9)
    assert fast == pytest.approx(slow / 2) and bound == 0.0


def test_repeated_blocks_are_counted_instance_by_instance():
    text = """archc: 1
name: stacked
input: [3, 16, 16]
blocks:
  unit:
    params: {out: {type: integer, minimum: 1, default: $in_channels}, stride: {type: integer, minimum: 1, default: 1}}
    nodes:
      conv: {type: conv, out: $out, stride: $stride, padding: 1, bias: false}
      bn: {type: batchnorm}
      relu: {type: activation}
nodes:
  stem: {type: conv, out: 8, padding: 1}
  body: {type: unit, repeat: 3, out: 16, first: {stride: 2}}
  convs: {type: conv, repeat: 2, kernel: 1}
"""
    net = archcompiler.compile(text)
    for amp in ("off", "bf16"):
        assert predicted_saved(net, 2, amp) == measured_saved(net, 2, amp)
    body = net.graph.nodes["body"]
    assert body.meta["saved_activations_bytes"] == sum(n.meta["saved_activations_bytes"] for n in body.body.layers())


@pytest.mark.parametrize("fn", sorted(MODULES))
def test_every_activation_saves_what_its_rule_says(fn):
    """Each function's rule (relu keeps its output, gelu its input...), in fp32 and bf16: the
    block's example is relu only, and gelu's only spec, convnext_tiny, is a slow test."""
    from tests.test_primitives_v2 import net

    compiled = net(f"a: {{type: conv, out: 6}}\nact: {{type: activation, fn: {fn}}}\nb: {{type: conv, out: 4}}")
    for amp in ("off", "bf16"):
        assert predicted_saved(compiled, 2, amp) == measured_saved(compiled, 2, amp), amp


@pytest.mark.parametrize("name", [b.name for b in builtin_registry()])
def test_every_block_types_example_saves_what_its_rule_says(name):
    """Each block type's declared rule, on its declared example, against autograd (fp32)."""
    from archcompiler.api import Compiled
    from tests.test_compiler_core import block_spec

    result = check_text(block_spec(builtin_registry().get(name)), f"<example {name}>")
    net = Compiled(result)
    assert predicted_saved(net, 2, "off") == measured_saved(net, 2, "off")


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_each_pad_mode_saves_what_its_rule_says(mode):
    """reflect and replicate keep their input for backward, zeros and circular nothing: the
    block's example is zeros only. Under CPU autocast reflect and replicate run in fp32, so
    what they save is an fp32 copy, and the conv after them saves their fp32 output."""
    from tests.test_primitives_v2 import net

    compiled = net(f"a: {{type: conv, out: 6}}\np: {{type: pad, pad: [1, 2, 0, 1], mode: {mode}}}\nb: {{type: conv, out: 4}}")
    for amp in ("off", "bf16"):  # under CPU autocast reflect and replicate run in fp32, on a cast copy
        assert predicted_saved(compiled, 2, amp) == measured_saved(compiled, 2, amp), amp


@pytest.mark.parametrize("params", ["{}", "{parts: 2}", "{parts: 2, groups: 3}"])
def test_each_softmax_form_saves_what_its_rule_says(params):
    """softmax keeps its output, which across parts with groups is still the block's output (a
    view of it: softmax writes the transposed order contiguously)."""
    from tests.test_primitives_v2 import net

    compiled = net(f"a: {{type: conv, out: 12}}\ns: {{type: softmax, {params[1:-1]}}}\nb: {{type: conv, out: 4}}")
    for amp in ("off", "bf16"):
        assert predicted_saved(compiled, 2, amp) == measured_saved(compiled, 2, amp), amp


@pytest.mark.parametrize("first", ["{type: pad, pad: 3, mode: reflect}", "{type: softmax}", "{type: pad, pad: 1, mode: replicate}"])
def test_an_op_on_the_image_alone_saves_nothing(first):
    """The image needs no gradient: a weightless op on it (CycleGAN's reflection pad first)
    makes no autograd node, so it saves nothing; the conv after it saves its output."""
    from tests.test_primitives_v2 import net

    compiled = net(f"first: {first}\nconv: {{type: conv, out: 4, kernel: 3}}\nact: {{type: activation}}\nlast: {{type: conv, out: 2}}",
                   input_shape=(3, 12, 12))
    for amp in ("off", "bf16"):
        assert predicted_saved(compiled, 2, amp) == measured_saved(compiled, 2, amp), amp


# A conv (or any op that saves its input) on one part of a split saves a narrow view, and
# autograd keeps the view's whole storage alive: the split's input, not the part.
SPLIT_SPECS = {
    "repro": """archc: 1
name: part_of_a_split
input: [64, 32, 32]
nodes:
  c0: {type: conv, kernel: 1}
  sp: {type: split, outputs: [a, b], sizes: [16, 48]}
  c1: {type: conv, kernel: 3, padding: 1, in: a}
  cat: {type: concat, in: [c1, b]}
""",
    "partial_conv": """archc: 1
name: partial_conv
input: [3, 32, 32]
blocks:
  partial_block:
    summary: "FasterNet's block: a 3x3 conv on a quarter of the channels, the rest untouched, then 1x1 convs and a residual."
    nodes:
      parts: {type: split, outputs: [conv_part, rest], sizes: [$in_channels // 4, $in_channels - $in_channels // 4]}
      pconv: {type: conv, kernel: 3, padding: 1, bias: false, in: conv_part}
      mixed: {type: concat, in: [pconv, rest]}
      expand: {type: conv, out: $in_channels * 2, kernel: 1, bias: false}
      bn: {type: batchnorm}
      act: {type: activation}
      project: {type: conv, out: $in_channels, kernel: 1, bias: false}
      sum: {type: add, in: [input, project]}
nodes:
  stem: {type: conv, out: 32, kernel: 4, stride: 4}
  stage: {type: partial_block, repeat: 2}
""",
    "csp": """archc: 1
name: csp
input: [3, 32, 32]
blocks:
  bottleneck:
    nodes:
      c1: {type: conv, kernel: 1, bias: false}
      b1: {type: batchnorm}
      a1: {type: activation, fn: silu}
      c2: {type: conv, kernel: 3, padding: 1, bias: false}
      b2: {type: batchnorm}
      a2: {type: activation, fn: silu}
      sum: {type: add, in: [input, a2]}
  csp:
    summary: "Cross-stage partial: split the channels, one half through bottlenecks, concat with the other, a 1x1 transition."
    nodes:
      c: {type: conv, kernel: 1, bias: false}
      bn: {type: batchnorm}
      act: {type: activation, fn: silu}
      halves: {type: split, outputs: [route, main]}
      body: {type: bottleneck, repeat: 2, in: main}
      cat: {type: concat, in: [body, route]}
      trans: {type: conv, kernel: 1, bias: false}
nodes:
  stem: {type: conv, out: 32, kernel: 3, stride: 2, padding: 1}
  stage: {type: csp}
""",
}


@pytest.mark.parametrize("name", sorted(SPLIT_SPECS))
def test_a_saved_part_of_a_split_keeps_the_whole_input(name):
    """The split's input is saved whole, once, however many parts are saved, and shared with
    an op that saves the input itself. Before, only the part's bytes were counted: the repro
    was 2.5 MiB for 4.0 at batch 8, a FasterNet-style partial conv 11% low, CSP 5%."""
    net = archcompiler.compile(SPLIT_SPECS[name])
    for amp in ("off", "bf16"):
        for batch in (1, 2):
            assert predicted_saved(net, batch, amp) == measured_saved(net, batch, amp), (amp, batch)
    if name == "repro":
        assert predicted_saved(net, 8, "off") == 4 * 2**20  # c0's input and its whole output, fp32


@pytest.mark.parametrize("name", ["repro", "csp"])
def test_a_split_keeps_its_input_alive_while_a_part_is_referenced(name):
    """In a forward pass, `x = x.narrow(...)` rebinds `x`, but the parts still hold the split's
    input: it is freed with the last variable that views it (30% low before, for the repro)."""
    net = archcompiler.compile(SPLIT_SPECS[name])
    x = torch.randn(4, *net.input_shape, generator=torch.Generator().manual_seed(0))
    measured = step_tensor_peak(net.module(seed=0), x, None, "infer").peak_bytes
    predicted = predict(net.graph, net.result.registry, 4, "infer").peak_bytes
    assert abs(predicted - measured) <= 0.01 * measured, (predicted, measured)
