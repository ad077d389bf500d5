"""Arithmetic on block parameters: `out: $width * 4`, `padding: ($kernel - 1) // 2`,
`p: 0.2 * $index / 16`.

A parameter value that is a string holding a `$` is an expression. The grammar is small and
closed, parsed here by recursive descent (never `eval`):

    value  := expr ("if" cond "else" value)?
    expr   := term (("+" | "-") term)*
    term   := unary (("*" | "//" | "/" | "%") unary)*
    unary  := "-" unary | atom
    atom   := INTEGER | DECIMAL | "$" NAME | ("min" | "max") "(" value ("," value)* ")"
            | ("round" | "int") "(" value ")" | "(" value ")"

(`round` is Python's: to the nearest integer, a half to the even one, as torchvision's width
rules use it: `int(round(0.25 * w))`; `int` truncates towards zero, as Python's does.
`A if C else B` is Python's conditional expression: only the branch that C picks is
computed, and it binds looser than everything else, so inside arithmetic it is bracketed:
`($a if $a > 8 else 8) * 2`. With it, torchvision's `_make_divisible` and MNASNet's
`_round_to_multiple_of` ("add a divisor if rounding lost more than 10%") are one value.)

A condition (a node's `when:`, or the value of a boolean parameter: `se: $index % 2 == 1`)
adds comparisons and logic over those expressions:

    cond   := conj ("or" conj)* ;  conj := neg ("and" neg)* ;  neg := "not" neg | cmp
    cmp    := "true" | "false" | "(" cond ")" | expr (("==" | "!=" | "<" | "<=" | ">" | ">=") expr)?
    (in a comparison, an atom may also be a quoted STRING: `$mode == 'fused'`, with == and != only)

(A "(" opens a condition when what it encloses is one and is followed by `and`, `or`, ")",
`else` or the end; otherwise it is an expression's, as in `($k + 1) * 2 == 4`.)

A whole-value `$name` is the same thing as before: it may stand for a value of any type
(a string, a boolean). Anything with an operator works on numbers: `//` floors, `/` gives a
decimal (where a parameter takes one, such as drop_path's `p`), `%` is Python's remainder
(`$out % 2`: GhostNet trims an odd width). Evaluation goes
through Python's operators, so `Sym` values (archcompiler.ir.expr) keep the expression and
the emitted code reads `nn.Conv2d(in_channels, 4 * width, ...)` rather than a number.
"""
from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass

from archcompiler.ir.expr import ADD, ATOM, COND, MUL, Sym, literal, smax, smin, sround, strunc, value_of

_TOKEN = re.compile(
    r"\s*(?:(?P<num>[0-9]*\.[0-9]+|[0-9]+\.[0-9]*)|(?P<int>[0-9]+)|(?P<var>\$[A-Za-z_][A-Za-z0-9_]*)|(?P<fn>min|max|round|int)\b|(?P<kw>and|or|not|true|false|if|else)\b"
    r"|(?P<str>'[^'\\]*'|\"[^\"\\]*\")"
    r"|(?P<op>//|==|!=|<=|>=|[-+*/%(),<>]))"
)
COMPARE = ("==", "!=", "<", "<=", ">", ">=")
_COMPARE = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


class ExprError(Exception):
    """A malformed or failing expression; `offset` is the 0-based character it points at."""

    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True)
class Node:
    kind: str  # "int" | "num" | "var" | "neg" | "+" | "-" | "*" | "//" | "/" | "%" | "min" | "max" | "round" | "trunc" (int()) | "if"
    offset: int
    value: object = None  # the integer, or the variable's name
    args: tuple = ()


def is_expression(value) -> bool:
    return isinstance(value, str) and "$" in value


def parse(text: str) -> Node:
    """An integer expression (a parameter value)."""
    return _parse(text, "value", "expression")


def parse_condition(text: str) -> Node:
    """A condition (a node's `when:`)."""
    return _parse(text, "cond", "condition")


_LOGIC_KINDS = ("or", "and", "not", *COMPARE)


def parse_value(text: str) -> Node:
    """A parameter's value: an expression, or a condition, whose value is true or false (a
    boolean parameter computed per instance: `se: $index % 2 == 1`)."""
    try:
        return parse(text)
    except ExprError as error:
        try:
            node = parse_condition(text)
        except ExprError as meant:
            # written as a condition (a comparison, and/or/not; not `A if C else B`, a value): what is wrong with it as one
            tokens = [tok for _, tok, _ in _tokens_or_none(text)]
            logic = "if" not in tokens and any(tok in ("and", "or", "not", *COMPARE) for tok in tokens)
            raise (meant if logic else error) from None
        if node.kind not in _LOGIC_KINDS:
            raise error from None
        return node


def _tokens_or_none(text: str) -> list:
    try:
        return _tokens(text)
    except ExprError:
        return []


MAX_TOKENS = 200  # a real parameter's expression has a handful; a chain of hundreds is a generated spec gone wrong
MAX_VALUE = 2**53  # any number of a spec, written (frontend/loader.py) or computed
MAX_DIGITS = 30  # more digits than any size or rate needs; Python floats overflow past about 308


def _parse(text: str, rule: str, what: str) -> Node:
    tokens = _tokens(text)
    if len(tokens) > MAX_TOKENS:
        raise ExprError(f"the {what} is too long: {len(tokens)} tokens, at most {MAX_TOKENS}", tokens[MAX_TOKENS][2])
    for kind, tok, at in tokens:
        if kind in ("int", "num") and len(tok.replace(".", "").lstrip("0")) > MAX_DIGITS:
            raise ExprError(f"the number {tok[:12]}... has more than {MAX_DIGITS} digits", at)
    parser = _Parser(tokens, len(text))
    node = getattr(parser, rule)()
    if parser.peek() is not None:
        _, tok, at = parser.peek()
        raise ExprError(f"unexpected '{tok}' after a complete {what}", at)
    return node


def holds(node: Node, env: dict) -> bool:
    """The truth of a condition over concrete values (a `$flag` must be a boolean)."""
    try:
        return _holds(node, env)
    except OverflowError:
        raise ExprError("a value in the condition is too large to compute", node.offset) from None


def _holds(node: Node, env: dict) -> bool:
    k = node.kind
    if k == "or":
        return any(_holds(a, env) for a in node.args)
    if k == "and":
        return all(_holds(a, env) for a in node.args)
    if k == "not":
        return not _holds(node.args[0], env)
    if k == "bool":
        return node.value
    if k in COMPARE:
        a, b = (value_of(_operand(x, env, node)) for x in node.args)
        if isinstance(a, str) != isinstance(b, str) or isinstance(a, (bool, list)) or isinstance(b, (bool, list)):
            raise ExprError(f"cannot compare {_show(a)} with {_show(b)}: a string compares with a string, a number with a number", node.offset)
        return _COMPARE[k](a, b)
    if k == "var":
        v = value_of(env[node.value])
        if not isinstance(v, bool):
            raise ExprError(f"${node.value} is {_show(v)}, not true or false; compare it, e.g. ${node.value} != 1", node.offset)
        return v
    raise ExprError("a condition needs a comparison (==, !=, <, <=, >, >=) or a true/false $parameter", node.offset)


_LOGIC = {"or": 1, "and": 2, "not": 3}  # Python's precedence, loosest first; a comparison binds tighter


def condition_source(node: Node, env: dict, prec: int = 0) -> str:
    """A condition as Python source over `env` (Sym values keep their variables), with only
    the parentheses Python needs: `stride != 1 or in_channels != width * 4`."""
    k = node.kind
    if k in ("or", "and"):
        text = f" {k} ".join(condition_source(a, env, _LOGIC[k] + (k == "and")) for a in node.args)
    elif k == "not":
        text = "not " + condition_source(node.args[0], env, _LOGIC[k])
    elif k == "bool":
        return "True" if node.value else "False"
    elif k in COMPARE:
        a, b = (_source(x, env, bracket_if=True) for x in node.args)
        return f"{a} {k} {b}"
    else:  # a boolean $parameter
        return _var_source(env[node.value])
    return f"({text})" if _LOGIC[k] < prec else text


def _var_source(v) -> str:
    """A `$name` as source: its value, or the expression it stands for, bracketed unless it is
    one atom (`k` given as `kk + 2` reads `(kk + 2) // 2`, not `kk + 2 // 2`)."""
    return v._wrap(ATOM) if isinstance(v, Sym) else literal(v)


_PREC = {"+": ADD, "-": ADD, "*": MUL, "//": MUL, "/": MUL, "%": MUL, "neg": ATOM, "if": COND}  # as Sym writes them (ir/expr.py)
_CALLS = {"min": "min", "max": "max", "round": "round", "trunc": "int"}


def _source(node: Node, env: dict, bracket_if: bool = False) -> str:
    """An operand of a condition, or a conditional value, as Python source from the tree as
    written: nothing is computed, so a branch that Python would skip (`$flag or 4 // $z > 1`,
    z = 0) is written, not evaluated. Brackets only where Python's grouping needs them
    (`bracket_if`: a conditional value as an operand, `(a if c else b) == 4`)."""
    k = node.kind
    if k in ("int", "num"):
        return repr(node.value)
    if k == "str":
        return literal(node.value)
    if k == "var":
        return _var_source(env[node.value])
    if k in _CALLS:
        return f"{_CALLS[k]}({', '.join(_source(a, env) for a in node.args)})"
    if k == "if":
        text = _conditional_source(node, env)
        return f"({text})" if bracket_if else text
    if k == "neg":
        inner = node.args[0]
        return f"-({_source(inner, env)})" if inner.kind in _PREC else f"-{_source(inner, env)}"
    left, right = node.args
    a, b = _source(left, env), _source(right, env)  # a conditional operand is bracketed below (COND is the lowest)
    if _PREC.get(left.kind, ATOM + 1) < _PREC[k]:
        a = f"({a})"
    if _PREC.get(right.kind, ATOM + 1) <= _PREC[k]:
        b = f"({b})"
    return f"{a} {k} {b}"


def _conditional_source(node: Node, env: dict) -> str:
    """`A if C else B` as Python source; A is bracketed when it is itself conditional (Python
    reads `a if c else b if d else e` as a choice in the else branch)."""
    cond, yes, no = node.args
    return f"{_source(yes, env, bracket_if=True)} if {condition_source(cond, env)} else {_source(no, env)}"


def compared_strings(node: Node) -> list[tuple[str, str, int]]:
    """(name, string, offset of the string) for each `$name == 'string'` (or !=) in a condition."""
    if node.kind in ("==", "!="):
        a, b = node.args
        if a.kind == "var" and b.kind == "str":
            return [(a.value, b.value, b.offset)]
        if a.kind == "str" and b.kind == "var":
            return [(b.value, a.value, a.offset)]
        return []
    return [found for arg in node.args for found in compared_strings(arg)]


def variables(node: Node) -> list[tuple[str, int]]:
    """(name, offset) of every `$name` in the expression, in order."""
    if node.kind == "var":
        return [(node.value, node.offset)]
    return [v for a in node.args for v in variables(a)]


def evaluate(node: Node, env: dict):
    """The value of the expression over `env` (plain values or Syms). A whole-value `$name`
    is its value, of any type; inside arithmetic, values must be integers. Raises ExprError."""
    if node.kind == "var":
        return env[node.value]
    if node.kind in _LOGIC_KINDS:  # a condition as a value: true or false
        value = holds(node, env)
        if any(isinstance(env.get(v), Sym) for v, _ in variables(node)):
            return Sym(condition_source(node, env), value, COND)
        return value
    try:
        value = _arith(node, env)
    except (OverflowError, ValueError):  # a decimal past 1e308, from huge parameter values; int() of one
        raise ExprError("the value is too large to compute", node.offset) from None
    if abs(value_of(value)) > MAX_VALUE:
        raise ExprError(f"the value is too large ({len(str(int(value_of(value))))} digits); a spec's numbers stay within 2^53", node.offset)
    return value


def _operand(node: Node, env: dict, comparison: Node):
    """A side of a comparison: a number, or with == and != a quoted string or a whole $name
    that holds one (`$mode == 'fused'`)."""
    quoted = [a for a in comparison.args if a.kind == "str"]
    if quoted and comparison.kind not in ("==", "!="):
        raise ExprError(f"a string compares only with == and !=, not {comparison.kind}", comparison.offset)
    if quoted:
        if node.kind == "str":
            return node.value
        if node.kind == "var":
            return env[node.value]
        raise ExprError("a quoted string compares with a $parameter, not with arithmetic", node.offset)
    return _arith(node, env)


def _arith(node: Node, env: dict):
    if node.kind == "str":
        raise ExprError(f"the string '{node.value}' is not a number: strings compare only with == and != (`$mode == '{node.value}'`)", node.offset)
    if node.kind in ("int", "num"):
        return node.value
    if node.kind == "var":
        v = env[node.value]
        if not (isinstance(value_of(v), (int, float)) and not isinstance(value_of(v), bool)):
            raise ExprError(f"${node.value} is {_show(value_of(v))}, not a number; arithmetic works on numbers", node.offset)
        return v
    if node.kind == "if":
        return _conditional(node, env)
    args = [_arith(a, env) for a in node.args]
    if node.kind == "neg":
        return -args[0]
    if node.kind == "min":
        return smin(*args)
    if node.kind == "max":
        return smax(*args)
    if node.kind == "round":
        return sround(args[0])
    if node.kind == "trunc":
        return strunc(args[0])
    a, b = args
    if node.kind == "+":
        return _finite(a + b, node)
    if node.kind == "-":
        return _finite(a - b, node)
    if node.kind == "*":
        return _finite(a * b, node)
    if value_of(b) == 0:
        raise ExprError("division by zero" if node.kind != "%" else "remainder of a division by zero", node.args[1].offset)
    return _finite(a / b if node.kind == "/" else a % b if node.kind == "%" else a // b, node)


def _finite(value, node: Node):
    """A computed value, refused when a decimal overflowed to infinity (or to NaN, inf * 0):
    an infinity would be written into the emitted code as a name Python does not know."""
    v = value_of(value)
    if isinstance(v, float) and not math.isfinite(v):
        raise ExprError("the value is too large to compute (not a finite number)", node.offset)
    return value


def _conditional(node: Node, env: dict):
    """`A if C else B`: the branch C picks, computed alone (the other may divide by zero, as in
    Python). Over Sym values it keeps the whole choice as written, for the emitted code."""
    cond, yes, no = node.args
    value = _arith(yes if _holds(cond, env) else no, env)
    if not any(isinstance(env.get(v), Sym) for v, _ in variables(node)):
        return value
    return Sym(_conditional_source(node, env), value_of(value), COND)


def _show(v) -> str:
    return f"'{v}'" if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out, i = [], 0
    while i < len(text):
        if text[i:].strip() == "":
            break
        m = _TOKEN.match(text, i)
        if m is None:
            at = i + len(text[i:]) - len(text[i:].lstrip())
            ch = text[at]
            word = re.match(r"[A-Za-z_]\w*", text[at:])
            if word and text[at + word.end():].lstrip().startswith("("):
                raise ExprError(f"unknown function '{word.group()}': the functions are min(), max(), round() and int(), with + - * / // and parentheses", at)
            if word:
                raise ExprError(f"unexpected '{word.group()}' in an expression: a parameter is written ${word.group()}, "
                              f"and a string to compare with is quoted, '{word.group()}'", at)
            if ch in "'\"":
                close = text.find(ch, at + 1)
                if close < 0:
                    raise ExprError(f"the string opened here is never closed with {ch}", at)
                slash = text.find(chr(92), at + 1, close)
                if slash >= 0:
                    raise ExprError("a quoted string may not hold a backslash; compare with a value that has none", slash)
            hint = "; only + - * / // % min() max() round() int(), A if C else B, and parentheses" if ch in "^.<>=!&|" else ""
            raise ExprError(f"unexpected '{ch}' in an expression{hint}", at)
        kind = m.lastgroup
        out.append((kind, m.group(kind), m.start(kind)))
        i = m.end()
    return out


MAX_DEPTH = 32  # nesting of parentheses, calls and signs; a parameter needs two or three


class _Parser:
    def __init__(self, tokens, length: int):
        self.tokens, self.i, self.length = tokens, 0, length
        self.depth = 0

    def nested(self, rule, at: int):
        """`rule()` one level deeper; refused past MAX_DEPTH rather than exhausting the stack."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExprError(f"the expression nests more than {MAX_DEPTH} levels deep", at)
        try:
            return rule()
        finally:
            self.depth -= 1

    def peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self):
        tok = self.peek()
        if tok is None:
            raise ExprError("the expression ends too early", self.length)
        self.i += 1
        return tok

    def expect(self, op: str):
        kind, tok, at = self.take()
        if tok != op:
            raise ExprError(f"expected '{op}', got '{tok}'", at)

    def cond(self) -> Node:
        args = [self.conj()]
        while (tok := self.peek()) is not None and tok[1] == "or":
            self.i += 1
            args.append(self.conj())
        return args[0] if len(args) == 1 else Node("or", args[0].offset, args=tuple(args))

    def conj(self) -> Node:
        args = [self.neg()]
        while (tok := self.peek()) is not None and tok[1] == "and":
            self.i += 1
            args.append(self.neg())
        return args[0] if len(args) == 1 else Node("and", args[0].offset, args=tuple(args))

    def neg(self) -> Node:
        tok = self.peek()
        if tok is not None and tok[1] == "not":
            self.i += 1
            return Node("not", tok[2], args=(self.nested(self.neg, tok[2]),))
        if tok is not None and tok[1] in ("true", "false"):
            self.i += 1
            return Node("bool", tok[2], tok[1] == "true")
        if tok is not None and tok[1] == "(":  # a parenthesised condition, or an expression's "("
            start = self.i
            try:
                self.i += 1
                inner = self.nested(self.cond, tok[2])
                self.expect(")")
                after = self.peek()
                if inner.kind in _LOGIC or inner.kind in COMPARE or inner.kind == "bool":
                    if after is None or after[1] in ("and", "or", ")", "else"):  # `else`: the C of `A if (C) else B`
                        return inner
            except ExprError as e:
                if "nests more than" in str(e):
                    raise
            self.i = start
        left = self.expr()
        tok = self.peek()
        if tok is not None and tok[1] == "if":
            raise ExprError("a conditional value inside a condition is bracketed: ($a if $c else $b) == 4", tok[2])
        if tok is not None and tok[1] in COMPARE:
            self.i += 1
            return Node(tok[1], tok[2], args=(left, self.expr()))
        return left

    def value(self) -> Node:
        """An expression, or a conditional one: `A if C else B`."""
        node = self.expr()
        tok = self.peek()
        if tok is None or tok[1] != "if":
            return node
        self.i += 1
        cond = self.nested(self.cond, tok[2])
        self.expect("else")
        return Node("if", tok[2], args=(cond, node, self.nested(self.value, tok[2])))

    def expr(self) -> Node:
        node = self.term()
        while (tok := self.peek()) is not None and tok[1] in "+-" and tok[0] == "op":
            self.i += 1
            node = Node(tok[1], tok[2], args=(node, self.term()))
        return node

    def term(self) -> Node:
        node = self.unary()
        while (tok := self.peek()) is not None and tok[0] == "op" and tok[1] in ("*", "//", "/", "%"):
            self.i += 1
            node = Node(tok[1], tok[2], args=(node, self.unary()))
        return node

    def unary(self) -> Node:
        tok = self.peek()
        if tok is not None and tok[1] == "-":
            self.i += 1
            return Node("neg", tok[2], args=(self.nested(self.unary, tok[2]),))
        return self.atom()

    def atom(self) -> Node:
        kind, tok, at = self.take()
        if kind == "int":
            return Node("int", at, int(tok))
        if kind == "num":
            return Node("num", at, float(tok))
        if kind == "str":
            return Node("str", at, tok[1:-1])
        if kind == "var":
            return Node("var", at, tok[1:])
        if kind == "fn":
            self.expect("(")
            args = [self.nested(self.value, at)]
            while (t := self.peek()) is not None and t[1] == ",":
                self.i += 1
                args.append(self.nested(self.value, at))
            self.expect(")")
            if tok in ("round", "int") and len(args) != 1:
                raise ExprError(f"{tok}() takes one value, got {len(args)}", at)
            return Node("trunc" if tok == "int" else tok, at, args=tuple(args))
        if tok == "(":
            node = self.nested(self.value, at)
            self.expect(")")
            return node
        raise ExprError(f"expected a number, a $parameter, min(), max(), round(), int() or '(', got '{tok}'", at)

