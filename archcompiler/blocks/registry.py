"""The block registry: every block type is declared once, with everything about it.

A block type knows its parameters (a JSON Schema fragment), its shape rule, its cost rule,
how it draws and how it emits PyTorch. The spec schema, the block docs and the tests are all
generated from this registry, so a new block type needs no edits anywhere else.
"""
from __future__ import annotations

import keyword
from dataclasses import dataclass, field

from archcompiler.ir.expr import ATOM, Sym

Shape = tuple  # (C, H, W) for feature maps, (N,) for vectors

# `$(?![\s\S])`: the very end; in Python (which jsonschema uses) a bare `$` also matches before a
# final newline, and "stem\n" would pass as a name. The lookahead reads the same in ECMA-262.
IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$(?![\s\S])"
# Node names become attribute names of an nn.Module and local variables of `forward`.
RESERVED_NAMES = sorted(
    set(keyword.kwlist)
    | {"input", "self", "torch", "nn", "F", "x", "training", "super", "T_destination"}
    | {
        "add_module", "apply", "bfloat16", "buffers", "call_super_init", "children", "compile",
        "cpu", "cuda", "double", "dump_patches", "eval", "extra_repr", "float", "forward",
        "get_buffer", "get_extra_state", "get_parameter", "get_submodule", "half", "ipu",
        "load_state_dict", "modules", "mtia", "named_buffers", "named_children", "named_modules",
        "named_parameters", "parameters", "register_backward_hook", "register_buffer",
        "register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook",
        "register_full_backward_pre_hook", "register_load_state_dict_post_hook",
        "register_load_state_dict_pre_hook", "register_module", "register_parameter",
        "register_state_dict_post_hook", "register_state_dict_pre_hook", "requires_grad_",
        "set_extra_state", "set_submodule", "share_memory", "state_dict", "to", "to_empty",
        "train", "type", "xpu", "zero_grad",
    }
)
# Python built-ins the emitted code calls or annotates with. A block parameter is a local
# variable of its class's constructor, so it may not take one of these names, nor a helper's
# (Block.torch_helpers); a node's variable in forward is renamed around them instead.
CODE_GLOBALS = ("bool", "int", "str", "max", "min", "range", "round")
# Besides these, no name may start with "_": nn.Module keeps its own state in _modules & co.
RESERVED_PREFIX = "_"


def reserved_name(name: str) -> bool:
    """Whether a user's name would clash with Python or nn.Module (the spec schema's rule)."""
    return name in RESERVED_NAMES or name.startswith(RESERVED_PREFIX)

@dataclass(frozen=True)
class Family:
    """A family of block types: how the block reference heads it and how diagrams colour it."""

    title: str  # heading in the block reference
    legend: str  # legend text on diagrams
    fill: str  # light fills keep black text readable in print
    border: str


FAMILIES = {
    "conv": Family("convolutions", "conv", "#cfe2f3", "#3d85c6"),
    "pooling": Family("pooling and resampling", "pooling / resampling", "#d9ead3", "#6aa84f"),
    "norm_act": Family("normalisation and activation", "norm / activation", "#fff2cc", "#bf9000"),
    "merge": Family("merge operations", "merge", "#f9cb9c", "#e69138"),
    "composite": Family("composite blocks", "composite", "#e4dcf4", "#8e7cc3"),
    "head": Family("classifier head", "head", "#f4cccc", "#cc4125"),
}


class ShapeError(Exception):
    """A shape rule refused its inputs. `param` names the parameter to blame, if any."""

    def __init__(self, message: str, param: str | None = None, code: str = "E400"):
        super().__init__(message)
        self.param = param
        self.code = code


@dataclass(frozen=True)
class Saved:
    """One tensor that autograd keeps for the backward pass of a primitive (docs/memory.md).

    `of` names it: "in0", "in1", ... an input (its storage, which other consumers may save
    too: it is counted once), "out" the node's own output, "param" a weight (no new memory
    in fp32; a bf16 copy under autocast), "new" a tensor the op makes for itself (batch
    norm's statistics, max pool's indices, dropout's noise). `dtype` is "" for the tensor's
    own dtype, "low" for the autocast dtype (a cast copy when the tensor is not in it yet),
    or a fixed dtype: "fp32", "int64", "bool"."""

    of: str
    elements: int = 0  # for "new" and "param"; inputs and outputs have their shape's size
    dtype: str = ""
    batched: bool = True  # "new" only: `elements` is per image (False: per batch, e.g. statistics)


class RegistryError(Exception):
    """A programming error in a block declaration, such as a duplicate name."""


@dataclass
class Block:
    """Base class of all block types. Subclasses override the rules they need."""

    name: str = ""
    family: str = ""
    summary: str = ""
    params: dict = field(default_factory=dict)  # name -> JSON Schema fragment (may hold "default")
    required: tuple = ()
    arity: int | None = 1  # None: two or more inputs, given as a list in `in:`
    refs: tuple = ()  # params that name another node whose shape is read (not its value)
    label_keys: tuple = ()  # params printed on diagrams
    per_use: dict = field(default_factory=dict)  # params that cannot be a spec-wide default -> why not
    origin: str = "built-in"  # where the block is defined, for docs and diagnostics
    # An instance to show and test the block with: its input shapes and its parameters.
    # Tests, the block reference and `archc render --block` use it; a new block brings its own.
    example_inputs: tuple = ((16, 8, 8),)
    example_params: dict = field(default_factory=dict)

    @property
    def is_composite(self) -> bool:
        return False

    def param_schema(self) -> dict:
        props = {k: {kk: vv for kk, vv in v.items() if not kk.startswith("x-")} for k, v in self.params.items()}
        return {"type": "object", "properties": props, "required": list(self.required), "additionalProperties": False}

    def with_defaults(self, given: dict) -> dict:
        out = {k: v["default"] for k, v in self.params.items() if "default" in v}
        out.update(given)
        return out

    # --- rules over concrete values; `p` holds every parameter, defaults filled in ---
    def infer(self, p: dict, ins: list[Shape], refs: dict[str, Shape], names: list[str]) -> Shape:
        """Output shape from input shapes (`names` are the input nodes, for messages)."""
        return ins[0]

    def param_count(self, p: dict, ins: list[Shape], out: Shape) -> int:
        return 0

    def flops(self, p: dict, ins: list[Shape], out: Shape) -> int:
        """Forward FLOPs at batch 1, counted as torch.utils.flop_counter.FlopCounterMode does."""
        return 0

    # --- code generation: strings of Python over already-rendered argument expressions ---
    def torch_module(self, p: dict, ins: list[Shape]) -> str | None:
        """Constructor expression of the nn.Module this node owns, or None when stateless."""
        return None

    def torch_call(self, p: dict, args: list[str], module: str | None, refs: dict[str, str]) -> str:
        """Expression computing the node's output from `args` (and `module`, e.g. 'self.conv1')."""
        return f"{module}({args[0]})"

    def torch_call_at(self, p: dict, args: list[str], module: str | None, refs: dict[str, str], ins: list[Shape]) -> str:
        """torch_call, for a block whose code depends on its input shapes too (split's offsets)."""
        return self.torch_call(p, args, module, refs)

    def takes_default(self, param: str, given: dict) -> bool:
        """Whether a spec-wide default for `param` applies to a node that gives `given`
        (an option of one variant, such as leaky_relu's slope, does not apply to the others)."""
        return True

    def torch_helpers(self) -> dict[str, str]:
        """Module-level functions or small nn.Module classes its code calls, by name, as source
        text (each included in the emitted file only when called, so it still needs only torch)."""
        return {}

    # --- memory rule (passes/memory.py): what the emitted op saves for backward, in training ---
    autocast_low: bool = False  # under autocast it computes in bf16 (conv, linear); others keep their inputs' dtype
    view: bool = False  # its output is a view of its input's storage (flatten), not new memory

    def runs_in_fp32(self, p: dict, device: str) -> bool:
        """Whether autocast runs this op in fp32 on `device`, casting a bf16 input up (the op is
        on PyTorch's autocast fp32 list there, as CPU's reflection pad is)."""
        return False

    def saved(self, p: dict, ins: list[Shape], out: Shape, device: str) -> list[Saved]:
        """The tensors autograd keeps for this op's backward when every input requires grad,
        checked against torch.autograd.graph.saved_tensors_hooks in tests/test_memory.py.
        Every primitive declares its own: there is no safe default."""
        raise NotImplementedError(f"block type '{self.name}' declares no `saved` rule")

    def workspace(self, p: dict, ins: list[Shape], out: Shape, device: str) -> int:
        """Elements per image its backward holds besides the gradients (scratch copies)."""
        return 0

    def label(self, p: dict) -> str:
        parts = [f"{k}={_fmt(p[k])}" for k in self.label_keys if k in p and p[k] is not None]
        return ", ".join(parts)


def _fmt(v) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def check_spatial(shape: Shape, block: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeError(f"{block} needs a feature map (C, H, W) but its input is a vector of {shape[0]}", code="E401")
    return shape


def pair(v) -> tuple:
    """(height, width) of a parameter given as one integer or as a [height, width] pair. A
    block parameter holding a pair (a Sym) yields its two items as expressions (`k[0]`)."""
    if isinstance(v, Sym) and isinstance(v.value, (list, tuple)) or isinstance(v, (list, tuple)):
        return tuple(items(v))
    return (v, v)


def items(v) -> list:
    """The items of a list value; a block parameter holding a list (a Sym) yields each as an
    expression (`k[0]`, `k[1]`, ...), so the emitted code indexes the constructor argument."""
    if isinstance(v, Sym) and isinstance(v.value, (list, tuple)):
        return [Sym(f"{v._wrap(ATOM)}[{i}]", x) for i, x in enumerate(v.value)]
    return list(v)


def window_out(size: int, kernel: int, stride: int, padding: int, dilation: int = 1, ceil_mode: bool = False) -> int:
    """Output length of a sliding window (conv or pool), as PyTorch computes it."""
    room = size + 2 * padding - dilation * (kernel - 1) - 1  # negative: the window is larger
    # floor division rounds down, as ATen's div_rtn; ceil mode rounds up, so that a window
    # larger than the input, or a last partial one, still yields an output...
    out = (room + (stride - 1 if ceil_mode else 0)) // stride + 1
    # ...but PyTorch drops a last window unless it starts inside the input or its left
    # padding (pooling_output_shape in ATen's Pool.h)
    if ceil_mode and (out - 1) * stride >= size + padding:
        out = out - 1
    return out if out >= 1 else 0


def slide(shape: Shape, kernel, stride, padding, dilation=1, ceil_mode: bool = False) -> tuple[int, int]:
    """Spatial output of a window over `shape`, or a ShapeError naming what does not fit.
    Each of kernel, stride, padding and dilation is an integer or a (height, width) pair."""
    _, h, w = shape
    dims = list(zip((h, w), pair(kernel), pair(stride), pair(padding), pair(dilation)))
    oh, ow = (window_out(n, k, s, pad, d, ceil_mode) for n, k, s, pad, d in dims)
    if oh < 1 or ow < 1:
        spans = [d * (k - 1) + 1 for _, k, _, _, d in dims]
        pads = pair(padding)
        pad = f" with padding {_pair_text(pads)}" if pads[0] or pads[1] else ""
        raise ShapeError(
            f"the {spans[0]}x{spans[1]} window does not fit the {h}x{w} input{pad}; the map would shrink below 1x1",
            param="kernel",
            code="E404",
        )
    return oh, ow


def _pair_text(v: tuple) -> str:
    return str(v[0]) if v[0] == v[1] else f"[{v[0]}, {v[1]}]"


class Registry:
    def __init__(self):
        self._blocks: dict[str, Block] = {}

    def register(self, block: Block) -> Block:
        if not block.name:
            raise RegistryError(f"{type(block).__name__} has no name")
        if block.name in self._blocks:
            raise RegistryError(f"block type '{block.name}' is registered twice ({self._blocks[block.name].origin} and {block.origin})")
        if block.family not in FAMILIES:
            raise RegistryError(f"block type '{block.name}' has unknown family '{block.family}'")
        self._blocks[block.name] = block
        return block

    def get(self, name: str) -> Block | None:
        return self._blocks.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self._blocks

    def __iter__(self):
        return iter(self._blocks.values())

    def names(self) -> list[str]:
        return list(self._blocks)

    def child(self) -> "Registry":
        """A registry that sees these blocks and can take more (a spec's own `blocks:`)."""
        r = Registry()
        r._blocks = dict(self._blocks)
        return r
