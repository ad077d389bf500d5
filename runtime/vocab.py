"""The runtime's vocabulary, defined once: optimizers, mixed precision, devices and their defaults.

The CLI's choices, the trainer, the bench and the spec schema all read these names, so adding an
optimizer means adding one entry to OPTIMIZERS below and nothing else. This module imports no
torch at load time (`archc check` reads it for memory estimates and never imports torch); the
torch objects are built inside the functions that return them.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

from runtime.errors import RuntimeUsageError


@dataclass(frozen=True)
class Optimizer:
    torch_name: str  # the class in torch.optim
    state_slots: int  # tensors of parameter size the optimizer keeps per parameter (memory estimates)
    uses_momentum: bool  # whether TrainConfig.momentum reaches it
    about: str  # one line for help texts and docs
    # For the memory and step-time models (docs/memory.md): the largest temporary of an update,
    # in parameter sizes (on the CPU torch updates one tensor at a time, and Adam's
    # `exp_avg_sq.sqrt() / c` makes two of the largest parameter's size; on CUDA the fused
    # update makes none), and the parameter-sized tensors an update
    # reads or writes (SGD reads p, g, buf and writes buf, p).
    update_temps: int = 0
    update_traffic: int = 0
    fused: bool = False  # torch has a fused CUDA implementation (one kernel for every parameter), used on CUDA


OPTIMIZERS: dict[str, Optimizer] = {
    "adam": Optimizer("Adam", 2, False, "Adam; weight_decay is L2 added to the gradient", update_temps=2, update_traffic=13, fused=True),
    "adamw": Optimizer("AdamW", 2, False, "Adam with decoupled weight decay", update_temps=2, update_traffic=15, fused=True),
    "sgd": Optimizer("SGD", 1, True, "SGD with momentum (one buffer; none when momentum is 0)", update_temps=0, update_traffic=5, fused=True),
}
AMP = ("bf16", "off")  # mixed precision: autocast to bfloat16, or plain fp32
DEVICES = ("auto", "cpu", "cuda")  # auto: cuda when present; cuda:N also accepted where a device is named
DEFAULT_MOMENTUM = 0.9  # the common choice for sgd, also what the bench's sgd step uses


def state_slots(name: str, momentum: float = DEFAULT_MOMENTUM) -> int:
    """Parameter-sized tensors the optimizer keeps per parameter (adam/adamw 2, sgd with momentum 1)."""
    spec = _optimizer(name)
    return 0 if spec.uses_momentum and momentum == 0 else spec.state_slots


def default_amp(kind: str) -> str:
    """bf16 on CUDA (tensor cores, half the activation memory); off on CPU, where bf16 is slower."""
    return "bf16" if kind == "cuda" else "off"


def default_compile(kind: str) -> bool:
    """torch.compile on CUDA; off on CPU, where compiling costs more than it saves in short runs."""
    return kind == "cuda"


def valid_device(name: str) -> bool:
    return name in DEVICES or name.startswith("cuda:")


def device_kind(requested: str) -> str:
    """'cpu' or 'cuda' for a requested device; auto picks cuda when present."""
    import torch

    if not valid_device(requested):
        raise RuntimeUsageError(f"--device must be auto, cpu or cuda[:N], not '{requested}'")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeUsageError("--device cuda: no CUDA device is available here (use --device cpu or auto)")
    return "cuda" if requested.startswith("cuda") else "cpu"


# torch.compile's modes. reduce-overhead (and max-autotune) replay each step as a CUDA graph on
# CUDA, which removes the launch overhead that bounds small batches; on the CPU they compile as
# the default does.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def uses_cudagraphs(compile_mode: str, device_type: str) -> bool:
    """Whether torch.compile in this mode replays CUDA graphs, whose steps must be marked."""
    return device_type == "cuda" and compile_mode in ("reduce-overhead", "max-autotune")


def compile_module(model, compile_mode: str = "default", **kwargs):
    """torch.compile(model) in `compile_mode` ("default" passes no mode, as torch's own default)."""
    import torch

    return torch.compile(model, **kwargs, **({"mode": compile_mode} if compile_mode != "default" else {}))


def fast_device_settings(device_type: str) -> None:
    """What archc train, archc bench and bench/layout.py all run CUDA with, so that a benchmark
    measures the configuration training uses: cuDNN's autotuner (one input size throughout, so
    the tuned kernels pay off at once) and TF32 for the float32 matmuls and convolutions that
    run outside bf16 autocast. Nothing on the CPU."""
    if device_type == "cuda":
        import torch

        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")


def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0, momentum: float = DEFAULT_MOMENTUM, device_type: str = "cpu"):
    """The torch optimizer called `name`; momentum reaches only those that use it. On CUDA the
    fused implementation where torch has one: one kernel updates every parameter in place, where the default
    (foreach) launches a dozen or more per step, which at small batches is time the GPU idles."""
    import torch

    spec = _optimizer(name)
    kwargs = {"lr": lr, "weight_decay": weight_decay}
    if spec.uses_momentum:
        kwargs["momentum"] = momentum
    if device_type == "cuda" and spec.fused:
        kwargs["fused"] = True
    return getattr(torch.optim, spec.torch_name)(params, **kwargs)


# oneDNN's weight gradient of a 1x1 convolution at a stride, on fewer than 16 input channels in
# channels_last, kills the process on the CPU (a segfault, or glibc's "corrupted double-linked
# list"): RepVGG's and ResNet-D's strided 1x1 shortcut on the image. Measured with torch 2.11
# and 2.14 on a Xeon, from 80x80 inputs up, never at 16 channels or more, nor in NCHW.
ONEDNN_STRIDED_1X1_MAX_CHANNELS = 15


def channels_last_hazard(model, device_type: str) -> str | None:
    """The first layer of `model` that training in channels_last on this device would crash
    in, described for a message; None when there is none."""
    from torch import nn

    if device_type != "cpu":
        return None
    for name, m in model.named_modules():
        if (isinstance(m, nn.Conv2d) and tuple(m.kernel_size) == (1, 1) and tuple(m.stride) != (1, 1)
                and m.in_channels <= ONEDNN_STRIDED_1X1_MAX_CHANNELS):
            stride = m.stride[0] if m.stride[0] == m.stride[1] else "x".join(map(str, m.stride))
            return f"'{name}', a 1x1 convolution at stride {stride} on {m.in_channels} channels"
    return None


def channels_last_refusal(hazard: str, flag: str = "--channels-last") -> str:
    return (f"{flag} on the CPU: oneDNN crashes the process in the backward pass of {hazard} in channels_last "
            f"(torch 2.11 to 2.14, measured); leave out {flag} to train in NCHW")


def autocast(device_type: str, amp: str):
    """The context a forward pass runs in: bf16 autocast, or nothing."""
    if amp not in AMP:
        raise RuntimeUsageError(f"--amp must be {' or '.join(AMP)}, not '{amp}'")
    if amp == "off":
        return nullcontext()
    import torch

    return torch.autocast(device_type, dtype=torch.bfloat16)


def _optimizer(name: str) -> Optimizer:
    if name not in OPTIMIZERS:
        raise RuntimeUsageError(f"unknown optimizer '{name}'; choose from {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name]
