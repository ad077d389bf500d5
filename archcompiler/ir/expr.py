"""Values that remember the expression they came from, for emitting composite classes.

A composite block becomes one nn.Module class whose constructor takes the block's
parameters. To write `nn.Conv2d(in_channels, conv_out, ...)` instead of `nn.Conv2d(64, 32,
...)`, code generation runs the ordinary shape rules over `Sym` values: each carries its
concrete value (so every comparison and check behaves exactly as in the real pass) and the
Python expression that computes it from the constructor's arguments.
"""
from __future__ import annotations

ATOM, MUL, ADD = 3, 2, 1  # precedence, for parentheses


class Sym:
    __slots__ = ("expr", "value", "prec")

    def __init__(self, expr: str, value, prec: int = ATOM):
        self.expr, self.value, self.prec = expr, value, prec

    # rendering
    def __str__(self) -> str:
        return self.expr

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return self.expr

    def _wrap(self, prec: int) -> str:
        return f"({self.expr})" if self.prec < prec else self.expr

    # arithmetic keeps the expression
    def _op(self, other, sym: str, prec: int, fn, right: bool = False):
        ov = other.value if isinstance(other, Sym) else other
        value = fn(ov, self.value) if right else fn(self.value, ov)
        a = self._wrap(prec)
        b = other._wrap(prec + (sym in "-/")) if isinstance(other, Sym) else repr(other)
        return Sym(f"{b} {sym} {a}" if right else f"{a} {sym} {b}", value, prec)

    def __add__(self, o):
        return self if o == 0 and not isinstance(o, Sym) else self._op(o, "+", ADD, lambda a, b: a + b)

    def __radd__(self, o):
        return self if o == 0 and not isinstance(o, Sym) else self._op(o, "+", ADD, lambda a, b: a + b, right=True)

    def __sub__(self, o):
        return self._op(o, "-", ADD, lambda a, b: a - b)

    def __rsub__(self, o):
        return self._op(o, "-", ADD, lambda a, b: a - b, right=True)

    def __mul__(self, o):
        return self if o == 1 and not isinstance(o, Sym) else self._op(o, "*", MUL, lambda a, b: a * b)

    def __rmul__(self, o):
        return self if o == 1 and not isinstance(o, Sym) else self._op(o, "*", MUL, lambda a, b: a * b, right=True)

    def __floordiv__(self, o):
        return self._op(o, "//", MUL, lambda a, b: a // b)

    def __rfloordiv__(self, o):
        return self._op(o, "//", MUL, lambda a, b: a // b, right=True)

    def __mod__(self, o):
        return self._op(o, "%", MUL, lambda a, b: a % b)

    def __rmod__(self, o):
        return self._op(o, "%", MUL, lambda a, b: a % b, right=True)

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


def value_of(v):
    return v.value if isinstance(v, Sym) else v


def literal(v) -> str:
    """Python source for a parameter value: a Sym's expression, or a literal."""
    if isinstance(v, Sym):
        return v.expr
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(v)


def keyword(name: str, value, default) -> str | None:
    """`name=value`, or None when the value is a constant equal to the default."""
    if not isinstance(value, Sym) and value == default:
        return None
    return f"{name}={literal(value)}"


def call(fn: str, positional: list, keywords: list[tuple]) -> str:
    args = [literal(v) for v in positional]
    args += [kw for kw in (keyword(*k) for k in keywords) if kw is not None]
    return f"{fn}({', '.join(args)})"
