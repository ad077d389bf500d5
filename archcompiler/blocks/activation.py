"""Element-wise activations, and the softmax that normalises across channels or branches."""
from __future__ import annotations

from dataclasses import dataclass, field

from archcompiler.blocks.registry import Block, Saved, ShapeError
from archcompiler.ir.expr import call, is_symbolic, literal

MODULES = {
    "relu": "nn.ReLU",
    "relu6": "nn.ReLU6",
    "leaky_relu": "nn.LeakyReLU",
    "gelu": "nn.GELU",
    "silu": "nn.SiLU",
    "hardswish": "nn.Hardswish",
    "hardsigmoid": "nn.Hardsigmoid",
    "sigmoid": "nn.Sigmoid",
    "tanh": "nn.Tanh",
    "elu": "nn.ELU",
    "selu": "nn.SELU",
    "mish": "nn.Mish",
    "softplus": "nn.Softplus",
}
# Parameters that only some functions take, with PyTorch's default and the functions they
# apply to. They have no schema default, so that one given to another function is an error
# rather than silently ignored.
OPTIONS = {
    "negative_slope": (0.01, ("leaky_relu",)),
    "approximate": ("none", ("gelu",)),
    "alpha": (1.0, ("elu",)),
    "beta": (1.0, ("softplus",)),
}

OPTIONS_OF = {fn for _, fns in OPTIONS.values() for fn in fns}  # built with their options


@dataclass
class Activation(Block):
    name: str = "activation"
    family: str = "norm_act"
    summary: str = ("An element-wise nonlinearity: relu, relu6, leaky_relu, gelu (exact or tanh), silu, "
                    "hardswish, hardsigmoid, sigmoid, tanh, elu, selu, mish or softplus.")
    label_keys: tuple = ("fn", "negative_slope", "approximate", "alpha", "beta")

    def __post_init__(self):
        self.params = {
            "fn": {"enum": list(MODULES), "default": "relu", "description": "the function"},
            "negative_slope": {"type": "number", "description": "leaky_relu only: the slope for x < 0 (default 0.01)"},
            "approximate": {"enum": ["none", "tanh"], "description": "gelu only: 'none' is exact (erf), 'tanh' the tanh approximation (default 'none')"},
            "alpha": {"type": "number", "description": "elu only: the value it tends to for large negative x is -alpha (default 1.0)"},
            "beta": {"type": "number", "exclusiveMinimum": 0, "description": "softplus only: log(1 + exp(beta * x)) / beta (default 1.0)"},
        }

    def takes_default(self, param, given):
        fn = given.get("fn", self.params["fn"]["default"])
        return param not in OPTIONS or (isinstance(fn, str) and fn in OPTIONS[param][1])

    def infer(self, p, ins, refs, names):
        for option, (_, fns) in OPTIONS.items():
            if option in p and p["fn"] not in fns:
                raise ShapeError(f"'{option}' applies to fn: {' or '.join(fns)}, not to fn: {p['fn']}", param=option, code="E408")
        return ins[0]

    def torch_module(self, p, ins):
        given = [(k, p[k], OPTIONS[k][0]) for k in OPTIONS if k in p]
        if is_symbolic(p["fn"]):  # a block parameter: chosen when the block is built
            return call("make_activation", [p["fn"]], given)
        if p["fn"] == "leaky_relu" and "negative_slope" in p:
            return call("nn.LeakyReLU", [p["negative_slope"]], [])
        return call(MODULES[p["fn"]], [], given)

    def torch_helpers(self):
        table = "".join(f'\n        "{k}": {v},' for k, v in MODULES.items() if k not in OPTIONS_OF)
        return {"make_activation": f'''def make_activation(
    fn: str, negative_slope: float = 0.01, approximate: str = "none", alpha: float = 1.0, beta: float = 1.0
) -> nn.Module:
    """The activation module named `fn`."""
    if fn == "leaky_relu":
        return nn.LeakyReLU(negative_slope)
    if fn == "gelu":
        return nn.GELU(approximate=approximate)
    if fn == "elu":
        return nn.ELU(alpha)
    if fn == "softplus":
        return nn.Softplus(beta)
    modules = {{{table}
    }}
    return modules[fn]()'''}

    # memory: relu, sigmoid and tanh differentiate from their output; the others (hardtanh
    # for relu6, gelu, silu, elu, selu, mish, softplus) from their input.
    def saved(self, p, ins, out, device):
        return [Saved("out" if p["fn"] in ("relu", "sigmoid", "tanh") else "in0")]


SPLIT_SOFTMAX = '''def split_softmax(x: torch.Tensor, parts: int, groups: int = 1) -> torch.Tensor:
    """Softmax across `parts` equal slices of the channels, at each position: SKNet's attention
    over its branches, and ResNeSt's rSoftMax, whose channels run (groups, parts, rest) in and
    (parts, groups, rest) out, so each part is one slice for a split."""
    b = x.shape[0]
    return x.reshape(b, groups, parts, -1).transpose(1, 2).softmax(dim=1).reshape(x.shape)'''


@dataclass
class Softmax(Block):
    name: str = "softmax"
    family: str = "norm_act"
    summary: str = ("Softmax over the channels at each pixel (or over a vector's features); with `parts`, across that many "
                    "equal slices of the channels, as SKNet and ResNeSt weigh their branches (rSoftMax, with `groups` cardinal groups).")
    label_keys: tuple = ("parts", "groups")
    example_params: dict = field(default_factory=lambda: {"parts": 2})

    def __post_init__(self):
        self.params = {
            "parts": {"type": "integer", "minimum": 1,
                      "description": "softmax across this many equal slices of the channels, position by position, instead of over all of them"},
            "groups": {"type": "integer", "minimum": 1, "default": 1,
                       "description": "with parts: ResNeSt's cardinality; channels read as (groups, parts, rest) and written as (parts, groups, rest)"},
        }

    def infer(self, p, ins, refs, names):
        c = ins[0][0]
        if "parts" not in p:
            if p["groups"] != 1:
                raise ShapeError("groups applies to a softmax across parts; give parts too", param="groups", code="E402")
            return ins[0]
        if c % (p["parts"] * p["groups"]):
            what = f"parts x groups = {p['parts'] * p['groups']}" if p["groups"] != 1 else f"parts={p['parts']}"
            raise ShapeError(f"{what} must divide the input {'channels' if len(ins[0]) == 3 else 'features'} ({c})",
                             param="parts", code="E402")
        return ins[0]

    def torch_call(self, p, args, module, refs):
        if "parts" not in p:
            return f"{args[0]}.softmax(dim=1)"
        groups = "" if not is_symbolic(p["groups"]) and p["groups"] == 1 else f", {literal(p['groups'])}"
        return f"split_softmax({args[0]}, {literal(p['parts'])}{groups})"

    def torch_helpers(self):
        return {"split_softmax": SPLIT_SOFTMAX}

    # memory: softmax differentiates from its output. Across parts, softmax writes a contiguous
    # tensor in the transposed order, so the reshape back is a view of what it saved.
    def saved(self, p, ins, out, device):
        return [Saved("out")]

    def runs_in_fp32(self, p, device):
        return device == "cuda"  # on CUDA's autocast fp32 list (CPU's keeps bf16)


BLOCKS = [Activation(), Softmax()]
