"""Merge operations over two or more inputs, given as a list in `in:`."""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod

from archcompiler.ir.expr import ADD, Sym, call, literal
from archcompiler.blocks.registry import IDENTIFIER, Block, Saved, ShapeError, items

AXES = ("channels", "height", "width")


def broadcast(op: str, ins, names) -> tuple:
    """NumPy-style broadcast of equal-rank shapes: each dim equal, or 1."""
    ranks = {len(s) for s in ins}
    if len(ranks) != 1:
        raise ShapeError(f"{op} cannot mix feature maps and vectors: {_list(ins, names)}", param="in", code="E410")
    out = []
    for axis, dims in enumerate(zip(*ins)):
        sizes = {d for d in dims if d != 1}
        if len(sizes) > 1:
            what = AXES[axis] if len(ins[0]) == 3 else "features"
            raise ShapeError(f"{op} needs matching {what} (or 1 to broadcast): {_list(ins, names, axis)}", param="in", code="E410")
        out.append(max(dims))
    return tuple(out)


def _list(ins, names, axis=None) -> str:
    if axis is None:
        return ", ".join(f"'{n}' is {fmt_shape(s)}" for n, s in zip(names, ins))
    return ", ".join(f"'{n}' has {s[axis]}" for n, s in zip(names, ins))


def fmt_shape(s) -> str:
    return f"{s[1]}x{s[2]}x{s[0]}" if len(s) == 3 else str(s[0])


@dataclass
class Add(Block):
    name: str = "add"
    family: str = "merge"
    summary: str = "Element-wise sum of its inputs, with broadcasting."
    arity: int | None = None
    example_inputs: tuple = ((16, 8, 8), (16, 1, 1))
    operator: str = "+"

    def infer(self, p, ins, refs, names):
        return broadcast(self.name, ins, names)

    def torch_call(self, p, args, module, refs):
        return f" {self.operator} ".join(args)

    # memory: the gradient of a sum (or a difference, negated) is passed through; nothing is saved.
    def saved(self, p, ins, out, device):
        return []


@dataclass
class Sub(Add):
    name: str = "sub"
    summary: str = ("Element-wise difference, with broadcasting: in[0] - in[1] (- in[2] ...), "
                    "as PoolFormer's token mixer `pool(x) - x`.")
    operator: str = "-"


@dataclass
class Mul(Block):
    name: str = "mul"
    family: str = "merge"
    summary: str = "Element-wise product, with broadcasting: (in[0] + offset) * in[1] * ... ; offset 1 gives attention's (1 + M) * T."
    arity: int | None = None
    example_inputs: tuple = ((16, 8, 8), (16, 1, 1))
    label_keys: tuple = ("offset",)
    example_params: dict = field(default_factory=lambda: {"offset": 1})

    def __post_init__(self):
        self.params = {"offset": {"type": "number", "default": 0, "description": "added to the first input before multiplying"}}

    def infer(self, p, ins, refs, names):
        return broadcast("mul", ins, names)

    def torch_call(self, p, args, module, refs):
        offset = p["offset"]._wrap(ADD) if isinstance(p["offset"], Sym) else literal(p["offset"])  # `(a if c else b) + x`
        first = f"({offset} + {args[0]})" if p["offset"] else args[0]
        return " * ".join([first, *args[1:]])

    def label(self, p):
        return f"(in0 + {p['offset']}) * in1" if p["offset"] else ""

    # memory: each `a * b` saves both operands. With an offset the left operand is the new
    # tensor (offset + in0); with three or more inputs the running product is a new one.
    def saved(self, p, ins, out, device):
        first = Saved("new", prod(ins[0])) if p["offset"] else Saved("in0")
        kept, running = [first, Saved("in1")], broadcast("mul", ins[:2], ["", ""])
        for i in range(2, len(ins)):
            kept += [Saved("new", prod(running)), Saved(f"in{i}")]
            running = broadcast("mul", [running, ins[i]], ["", ""])
        return kept


@dataclass
class Concat(Block):
    name: str = "concat"
    family: str = "merge"
    summary: str = "Concatenate along channels; H x W must match."
    arity: int | None = None
    example_inputs: tuple = ((16, 8, 8), (8, 8, 8))

    def infer(self, p, ins, refs, names):
        ranks = {len(s) for s in ins}
        if len(ranks) != 1:
            raise ShapeError(f"concat cannot mix feature maps and vectors: {_list(ins, names)}", param="in", code="E411")
        if len(ins[0]) == 3 and len({s[1:] for s in ins}) != 1:
            sizes = ", ".join(f"'{n}' is {s[1]}x{s[2]}" for n, s in zip(names, ins))
            raise ShapeError(f"concat needs the same H x W on every input: {sizes}", param="in", code="E411")
        return (sum(s[0] for s in ins), *ins[0][1:])

    def torch_call(self, p, args, module, refs):
        return f"torch.cat([{', '.join(args)}], dim=1)"

    # memory: cat's backward slices the gradient by sizes; nothing is saved.
    def saved(self, p, ins, out, device):
        return []


@dataclass
class Split(Block):
    name: str = "split"
    family: str = "merge"
    summary: str = ("Split the channels into named parts, the inverse of concat: `outputs: [a, b]` makes nodes `a` "
                    "and `b` that others read by name; equal parts unless `sizes` says. Each part is a view, no copy.")
    params: dict = field(default_factory=lambda: {
        "outputs": {"type": "array", "items": {"type": "string", "pattern": IDENTIFIER}, "minItems": 2, "maxItems": 64, "uniqueItems": True,
                    "description": "the parts' names: each is a node the others read"},
        "sizes": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 2, "maxItems": 64,
                  "description": "channels of each part, in order (default: equal parts)"},
        "take": {"type": "string", "pattern": IDENTIFIER, "description": "which part this node is; the compiler sets it on each part"},
    })
    required: tuple = ("outputs",)
    label_keys: tuple = ("take",)
    per_use: dict = field(default_factory=lambda: {
        "outputs": "the parts are nodes, named where each split is written, and two splits cannot share their names",
        "take": "the compiler sets it on each part of a split",
    })
    example_inputs: tuple = ((16, 8, 8),)
    example_params: dict = field(default_factory=lambda: {"outputs": ["left", "right"], "sizes": [4, 12]})

    def _bounds(self, p, channels):
        outs, sizes = p["outputs"], p.get("sizes")
        if sizes is not None:  # `sizes: $sz`, a block's array parameter, gives its items as expressions
            sizes = items(sizes)
        if sizes is None:
            if channels % len(outs):
                raise ShapeError(f"{channels} channels do not split into {len(outs)} equal parts; give sizes", param="outputs", code="E412")
            sizes = [channels // len(outs)] * len(outs)
        elif len(sizes) != len(outs):
            raise ShapeError(f"sizes gives {len(sizes)} sizes for {len(outs)} outputs", param="sizes", code="E412")
        elif sum(sizes) != channels:
            raise ShapeError(f"sizes add up to {sum(sizes)}, but the input has {channels} channels", param="sizes", code="E412")
        if "take" in p and p["take"] not in outs:
            raise ShapeError(f"take '{p['take']}' is not one of its outputs ({', '.join(outs)})", param="take", code="E412")
        i = outs.index(p["take"]) if "take" in p else 0
        return sum(sizes[:i]), sizes[i]

    def infer(self, p, ins, refs, names):
        if len(ins[0]) != 3:
            raise ShapeError(f"split divides a feature map's channels, but '{names[0]}' is a vector", param="in", code="E412")
        return (self._bounds(p, ins[0][0])[1], *ins[0][1:])

    def torch_call_at(self, p, args, module, refs, ins):
        start, size = self._bounds(p, ins[0][0])
        return f"{args[0]}.narrow(1, {literal(start)}, {literal(size)})"

    # memory: a view of its input (narrow); nothing is saved.
    view: bool = True

    def saved(self, p, ins, out, device):
        return []


# EfficientDet's BiFPN fusion (Tan et al. 2020): a learned weight per input, made positive and
# normalised ("fast normalized fusion", or a softmax), then a weighted sum. A module of its
# own so that the spec's node name is its state_dict prefix (`fuse.weight`).
WEIGHTED_ADD = '''class WeightedAdd(nn.Module):
    """A learned weight per input, starting at 1: sum_i w_i * x_i, with w = relu(weight) / (sum(relu(weight)) + eps)
    ("fast", EfficientDet's BiFPN), softmax(weight), or the weights as they are ("none")."""

    def __init__(self, inputs: int, normalize: str = "fast", eps: float = 1e-4):
        super().__init__()
        self.normalize, self.eps = normalize, eps
        self.weight = nn.Parameter(torch.ones(inputs))

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if self.normalize == "fast":
            w = F.relu(w)
            w = w / (w.sum() + self.eps)
        elif self.normalize == "softmax":
            w = torch.softmax(w, dim=0)
        out = w[0] * xs[0]
        for i in range(1, len(xs)):
            out = out + w[i] * xs[i]
        return out'''


@dataclass
class WeightedAdd(Block):
    name: str = "weighted_add"
    family: str = "merge"
    summary: str = ("Weighted sum of its inputs with a learned weight per input, starting at 1 and normalised as "
                    "EfficientDet's BiFPN fuses features (`normalize: fast`: relu, then divided by their sum + eps; "
                    "`softmax`; or `none`); as many parameters as inputs.")
    arity: int | None = None
    example_inputs: tuple = ((16, 8, 8), (16, 8, 8), (16, 8, 8))
    label_keys: tuple = ("normalize",)

    def __post_init__(self):
        self.params = {
            "normalize": {"enum": ["fast", "softmax", "none"], "default": "fast", "description": "how the weights are made to sum to 1"},
            "eps": {"type": "number", "exclusiveMinimum": 0, "default": 1e-4, "description": "with fast: added to the weights' sum"},
        }

    def infer(self, p, ins, refs, names):
        return broadcast("weighted_add", ins, names)

    def param_count(self, p, ins, out):
        return len(ins)

    def torch_module(self, p, ins):
        return call("WeightedAdd", [len(ins)], [("normalize", p["normalize"], "fast"), ("eps", p["eps"], 1e-4)])

    def torch_call(self, p, args, module, refs):
        return f"{module}({', '.join(args)})"

    def torch_helpers(self):
        return {"WeightedAdd": WEIGHTED_ADD}

    # memory: each `w[i] * x_i` saves x_i and w[i]; w[i] are views of the normalised weights,
    # made once per step (not per image): relu's output and the division's (with its
    # denominator) for fast, softmax's output for softmax, the parameter itself for none.
    def saved(self, p, ins, out, device):
        n = len(ins)
        weights = {"fast": 2 * n + 1, "softmax": n, "none": 0}[p["normalize"]]
        return [Saved(f"in{i}") for i in range(n)] + ([Saved("new", weights, dtype="fp32", batched=False)] if weights else [])


BLOCKS = [Add(), Sub(), Mul(), Concat(), Split(), WeightedAdd()]
