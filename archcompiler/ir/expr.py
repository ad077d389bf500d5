"""Values that remember the expression they came from: the IR's symbolic parameters.

A composite block becomes one class whose constructor takes the block's parameters. The
shape pass runs the ordinary shape rules over `Sym` values inside a composite's body: each
carries its concrete value (so every comparison and check behaves exactly as with plain
values) and the expression that computes it from the block's parameters. Backends render
that expression, so `nn.Conv2d(in_channels, conv_out, ...)` is written instead of
`nn.Conv2d(64, 32, ...)`.

A variable inside an expression is held as a marker, `VAR_OPEN name VAR_CLOSE`, so that a
backend can decide how to spell it where it is used (a constructor argument, an attribute
read in `forward`, a size read off the input tensor) and can see which variables a piece of
generated code really uses.
"""
from __future__ import annotations

import re

ATOM, MUL, ADD, COND = 3, 2, 1, 0  # precedence, for parentheses (COND: `a if c else b`)
VAR_OPEN, VAR_CLOSE = "\x01", "\x02"
_VAR = re.compile("\x01([A-Za-z_][A-Za-z0-9_]*)\x02")


class Sym:
    __slots__ = ("expr", "value", "prec")

    def __init__(self, expr: str, value, prec: int = ATOM):
        self.expr, self.value, self.prec = expr, value, prec

    @classmethod
    def var(cls, name: str, value) -> "Sym":
        """The block parameter `name`, whose value in this instance is `value`."""
        return cls(f"{VAR_OPEN}{name}{VAR_CLOSE}", value)

    # rendering
    def __str__(self) -> str:
        return render(self.expr)

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return render(self.expr)

    def _wrap(self, prec: int) -> str:
        return f"({self.expr})" if self.prec < prec else self.expr

    # arithmetic keeps the expression
    def _op(self, other, sym: str, prec: int, fn, right: bool = False):
        ov = other.value if isinstance(other, Sym) else other
        value = fn(ov, self.value) if right else fn(self.value, ov)
        # Python groups left to right, so a right operand of the same precedence is
        # bracketed: a - (b - c), a // (c * d), a * (b // c) each differ without.
        if right:  # other (op) self: self is the right operand
            a = _operand(other, prec)
            b = self._wrap(prec + 1)
            return Sym(f"{a} {sym} {b}", value, prec)
        a = self._wrap(prec)
        b = _operand(other, prec + 1)
        return Sym(f"{a} {sym} {b}", value, prec)

    def __add__(self, o):
        return self if _is(o, 0) else self._op(o, "+", ADD, lambda a, b: a + b)

    def __radd__(self, o):
        return self if _is(o, 0) else self._op(o, "+", ADD, lambda a, b: a + b, right=True)

    def __sub__(self, o):
        return self if _is(o, 0) else self._op(o, "-", ADD, lambda a, b: a - b)

    def __rsub__(self, o):
        return self._op(o, "-", ADD, lambda a, b: a - b, right=True)

    def __mul__(self, o):
        return self if _is(o, 1) else self._op(o, "*", MUL, lambda a, b: a * b)

    def __rmul__(self, o):
        return self if _is(o, 1) else self._op(o, "*", MUL, lambda a, b: a * b, right=True)

    def __floordiv__(self, o):  # x // 1 is x only for an integer x (2.5 // 1 is 2.0)
        return self if _is(o, 1) and _is_int(self.value) else self._op(o, "//", MUL, lambda a, b: a // b)

    def __rfloordiv__(self, o):
        return self._op(o, "//", MUL, lambda a, b: a // b, right=True)

    def __truediv__(self, o):  # x / 1 is x only for a decimal x (4 / 1 is 4.0)
        return self if _is(o, 1) and isinstance(self.value, float) else self._op(o, "/", MUL, lambda a, b: a / b)

    def __rtruediv__(self, o):
        return self._op(o, "/", MUL, lambda a, b: a / b, right=True)

    def __mod__(self, o):
        return self._op(o, "%", MUL, lambda a, b: a % b)

    def __rmod__(self, o):
        return self._op(o, "%", MUL, lambda a, b: a % b, right=True)

    def __neg__(self):
        return Sym(f"-{self._wrap(ATOM)}", -self.value, ATOM)

    # everything else looks at the value
    def __eq__(self, o):
        return self.value == (o.value if isinstance(o, Sym) else o)

    def __ne__(self, o):
        return not self == o

    def __lt__(self, o):
        return self.value < (o.value if isinstance(o, Sym) else o)

    def __le__(self, o):
        return self.value <= (o.value if isinstance(o, Sym) else o)

    def __gt__(self, o):
        return self.value > (o.value if isinstance(o, Sym) else o)

    def __ge__(self, o):
        return self.value >= (o.value if isinstance(o, Sym) else o)

    def __hash__(self):
        return hash(self.value)

    def __bool__(self):
        return bool(self.value)

    def __index__(self):
        return int(self.value)

    __int__ = __index__


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is(o, n) -> bool:
    """`o` is the integer n (x * 1.0 is a decimal, so it is written out, not dropped)."""
    return isinstance(o, int) and not isinstance(o, bool) and o == n


def _operand(v, prec: int) -> str:
    if isinstance(v, Sym):
        return v._wrap(prec)
    text = repr(v)
    return f"({text})" if isinstance(v, (int, float)) and v < 0 else text


def smin(*args):
    """min() that keeps the expression when an argument is a Sym."""
    return _fold("min", min, args)


def smax(*args):
    return _fold("max", max, args)


def sround(x):
    """round() that keeps the expression: Python's, to the nearest integer, a half to even."""
    value = round(value_of(x))
    return Sym(f"round({x._wrap(0)})", value) if isinstance(x, Sym) else value


def strunc(x):
    """int() that keeps the expression: towards zero, as Python's."""
    value = int(value_of(x))
    return Sym(f"int({x._wrap(0)})", value) if isinstance(x, Sym) else value


def _fold(name: str, fn, args):
    value = fn(value_of(a) for a in args)
    if not any(isinstance(a, Sym) for a in args):
        return value
    return Sym(f"{name}({', '.join(_operand(a, 0) for a in args)})", value)


def value_of(v):
    return v.value if isinstance(v, Sym) else v


def is_symbolic(v) -> bool:
    return isinstance(v, Sym)


def variables(v) -> set[str]:
    """The block parameters an expression (or generated code, or a [height, width] pair of
    expressions) depends on."""
    if isinstance(v, (list, tuple)):
        return set().union(*(variables(x) for x in v))
    text = v.expr if isinstance(v, Sym) else str(v)
    return set(_VAR.findall(text))


def render(text: str, spell=None) -> str:
    """Code or an expression with each variable marker spelt by `spell(name)` (default: the name)."""
    if spell is None:
        return _VAR.sub(lambda m: m.group(1), text)
    return _VAR.sub(lambda m: spell(m.group(1)), text)


def substitute(v, bindings: dict):
    """`v` with each variable replaced by its binding (a Sym or a plain value): an expression
    in a block's own parameters becomes one in its caller's."""
    if not isinstance(v, Sym):
        return v
    whole = _VAR.fullmatch(v.expr)
    if whole:  # a bare variable becomes its binding, without parentheses
        return bindings[whole.group(1)]

    def one(m):
        b = bindings[m.group(1)]
        return b._wrap(ATOM) if isinstance(b, Sym) else _operand(b, ATOM)

    expr = _VAR.sub(one, v.expr)
    return Sym(expr, v.value, v.prec) if _VAR.search(expr) else v.value


def rebind(v, name: str, to):
    """`v` with the variable `name` replaced by `to` (a Sym or a plain value), other variables
    kept; the value is unchanged (the caller rewrites what the same value is called)."""
    mark = f"{VAR_OPEN}{name}{VAR_CLOSE}"
    if not isinstance(v, Sym) or mark not in v.expr:
        return v
    expr = v.expr.replace(mark, to._wrap(ATOM) if isinstance(to, Sym) else _operand(to, ATOM))
    return Sym(expr, v.value, v.prec) if _VAR.search(expr) else v.value


def literal(v) -> str:
    """Python source for a parameter value: a Sym's expression, or a literal."""
    if isinstance(v, Sym):
        return v.expr
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        inner = ", ".join(literal(x) for x in v)
        return f"({inner},)" if isinstance(v, tuple) and len(v) == 1 else (f"({inner})" if isinstance(v, tuple) else f"[{inner}]")
    return repr(v)


def keyword(name: str, value, default) -> str | None:
    """`name=value`, or None when the value is a constant equal to the default. A default
    that is itself an expression (a pool's stride defaults to its kernel, `$in_width // 4`)
    is equal only to the same expression, not to a constant that happens to match here."""
    if _symbolic(default) or _symbolic(value):  # equal only as the same expression
        if literal(value) == literal(default):
            return None
    elif value == default:
        return None
    return f"{name}={literal(value)}"


def _symbolic(v) -> bool:
    return isinstance(v, Sym) or (isinstance(v, (list, tuple)) and any(isinstance(x, Sym) for x in v))


def call(fn: str, positional: list, keywords: list[tuple]) -> str:
    args = [literal(v) for v in positional]
    args += [kw for kw in (keyword(*k) for k in keywords) if kw is not None]
    return f"{fn}({', '.join(args)})"
