"""Composite block types: YAML graphs over other blocks, from the standard library or a
spec's own `blocks:` section. Their shape and cost rules are those of their expanded body."""
from __future__ import annotations

from dataclasses import dataclass, field

from archcompiler.blocks.registry import Block
from archcompiler.ir.arith import ExprError, evaluate, is_expression, parse_value, variables

# Values every composite body may substitute, bound from the block's input shape.
BUILTIN_VARS = ("in_channels", "in_height", "in_width")
EXTRA_DIMS = ("channels", "height", "width")  # a named input `skip` binds $skip_channels, ...
# Where every paper model starts its blocks (the stem's output): a block's example input
# unless its definition gives one.
DEFAULT_INPUT = (64, 64, 64)


@dataclass
class Composite(Block):
    family: str = "composite"
    definition: dict = field(default_factory=dict)  # the block's mapping: params, nodes, output
    doc: object = None  # the Document it came from, for positions
    path: tuple = ()  # its path in that document, ('blocks', name)
    broken: bool = False  # its definition has errors (reported); uses of it are skipped

    def __post_init__(self):
        if not isinstance(self.definition.get("nodes"), dict):
            self.definition = {**self.definition, "nodes": {}}
        self.summary = self.definition.get("summary", self.summary or f"composite block '{self.name}'")
        params = self.definition.get("params")  # malformed declarations were reported; skip them
        self.params = {k: v for k, v in params.items() if isinstance(v, dict)} if isinstance(params, dict) else {}
        self.required = tuple(k for k, v in self.params.items() if "default" not in v)
        self.label_keys = tuple(self.params)
        extra = self.definition.get("inputs")  # malformed lists were reported by the schema
        self.extra_inputs = tuple(extra) if isinstance(extra, list) and all(isinstance(n, str) for n in extra) else ()
        self.arity = 1 + len(self.extra_inputs)
        # a malformed example was reported by the structure check; fall back to the default
        example = self.definition.get("example") if isinstance(self.definition.get("example"), dict) else {}
        shape, params = example.get("input"), example.get("params")
        main = tuple(shape) if _sound_shape(shape) else DEFAULT_INPUT
        others = example.get("inputs") if isinstance(example.get("inputs"), dict) else {}
        self.example_inputs = (main,) + tuple(tuple(others[n]) if _sound_shape(others.get(n)) else main for n in self.extra_inputs)
        self.example_params = dict(params) if isinstance(params, dict) else {}

    @property
    def builtin_vars(self) -> tuple:
        """Names bound from the input shapes: $in_channels & co., and $NAME_channels,
        $NAME_height, $NAME_width for each named input."""
        return BUILTIN_VARS + tuple(f"{n}_{d}" for n in self.extra_inputs for d in EXTRA_DIMS)

    @property
    def is_composite(self) -> bool:
        return True

    @property
    def nodes(self) -> dict:
        return self.definition["nodes"]

    @property
    def output(self) -> str:
        return self.outputs[0]

    @property
    def outputs(self) -> list[str]:
        """Its outputs: `output:` as written (a list when there are several), or the last node."""
        out = self.definition.get("output")
        if isinstance(out, list) and out and all(isinstance(o, str) for o in out):
            return list(out)
        return [out if isinstance(out, str) else (list(self.nodes) or ["input"])[-1]]

    def uses(self) -> list[str]:
        """Block types named in the body, in order."""
        return [n["type"] for n in self.nodes.values() if isinstance(n, dict) and isinstance(n.get("type"), str)]

    def bind(self, given: dict, in_shape: tuple, others: tuple = ()) -> dict:
        """Parameter values for one instance: built-ins from the input shapes (the main one,
        then `others`, those of the named inputs), then defaults, then what the caller gave.
        A default may itself be an expression over the built-ins (`$in_channels // 4`) and the
        other parameters (`padding: $kernel // 2`), checked when the block was defined."""
        env = {"in_channels": in_shape[0]}
        if len(in_shape) == 3:
            env.update(in_height=in_shape[1], in_width=in_shape[2])
        for name, shape in zip(self.extra_inputs, others):
            env.update(zip((f"{name}_{d}" for d in EXTRA_DIMS), shape))
        env.update(given)
        computed = {}
        for k, decl in self.params.items():
            if "default" in decl and k not in given:
                d = decl["default"]
                if is_expression(d):
                    computed[k] = parse_value(d)
                else:
                    env[k] = d
        while computed:  # a default over other parameters (`padding: $kernel // 2`) after those it reads; no cycles (checked)
            ready = [k for k, tree in computed.items() if all(v in env for v, _ in variables(tree))]
            for k in ready:
                try:
                    env[k] = evaluate(computed.pop(k), env)
                except ExprError as e:  # `$a // 0`, or a value too large: named with the default it came from
                    raise DefaultError(k, self.params[k]["default"], str(e)) from None
            if not ready:  # only in a definition already reported as broken
                raise ExprError(f"the defaults of {', '.join(computed)} read each other", 0)
        return env


class DefaultError(Exception):
    """A parameter's default that could not be computed for one use."""

    def __init__(self, param: str, text: str, reason: str):
        super().__init__(reason)
        self.param, self.text = param, text


def _sound_shape(shape) -> bool:
    return isinstance(shape, list) and 1 <= len(shape) <= 3 and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)
