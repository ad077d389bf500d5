"""YAML text -> positioned document.

PyYAML's composer gives a node tree with marks. We walk it ourselves instead of letting
PyYAML construct Python objects, so that we can (a) remember the source position of every
key and value, (b) reject duplicate keys, unsafe tags and merge keys, and (c) refuse alias
bombs before expanding them, in time and memory bounded by the size of the text.
"""
from __future__ import annotations

import math
import os
import re
import stat
from dataclasses import dataclass, field

import yaml

from archcompiler.diagnostics import Diagnostics, Span
from archcompiler.ir.arith import MAX_VALUE

Path = tuple  # a JSON-pointer-like path of mapping keys and list indices

# Only plain data: no python/*, no binary, no application tags.
_SAFE_TAGS = {
    f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "seq", "map", "timestamp")
}
# A spec is a few hundred nodes. Anything that expands past this through aliases is refused.
MAX_EXPANDED_NODES = 100_000
# A spec nests about six levels deep. Much deeper nesting is refused before it can exhaust
# Python's recursion limit in PyYAML's composer, in the builder below or in jsonschema.
MAX_DEPTH = 64
# The paper's largest model is 2 KiB of YAML; PyYAML parses about 100 KiB a second.
MAX_TEXT = 256 * 1024  # characters, and bytes read from a file
_TAB_INDENT = re.compile(r"^[ ]*\t")
# Plain scalars are read by YAML 1.2's core schema, not PyYAML's YAML 1.1 rules (under which
# `010` is 8, `1:30` is 90, `1_0` is 10, `yes` is true and `1e-3` is a string).
_NULL_12 = re.compile(r"^(~|null|Null|NULL|)$")
_BOOL_12 = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT_12 = re.compile(r"^[-+]?[0-9]+$")
_OCT_12 = re.compile(r"^0o[0-7]+$")
_HEX_12 = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT_12 = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_NONFINITE_12 = re.compile(r"^([-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN))$")
_COLLECTIONS = {"!!map": "a mapping", "!!seq": "a list"}
# An explicit tag takes the same forms as the core schema resolves to that tag, no others.
_TAG_FORMS = {
    "null": "null as null, ~ or nothing",
    "bool": "a boolean as true or false",
    "int": "an integer in decimal digits, 0o octal or 0x hex",
    "float": "a float like 4, 0.5 or 1e-3",
}
_YAML_1_1_ONLY = [
    (re.compile(r"^[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?$"), "base 60 (1:30) is YAML 1.1 only"),
    (re.compile(r"^[-+]?[0-9.][0-9_.]*_[0-9_.]*([eE][-+]?[0-9]+)?$"), "digit separators (1_000) are YAML 1.1 only"),
    (re.compile(r"^[-+]?0b[01_]+$"), "0b binary is YAML 1.1 only"),
    (re.compile(r"^[-+]0x[0-9a-fA-F]+$"), "a sign before 0x is YAML 1.1 only"),
    (re.compile(r"^(y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF)$"), "yes, no, on and off are YAML 1.1 only"),
]


@dataclass
class Document:
    """Plain data (dicts, lists, scalars) plus the position of every value and key."""

    file: str
    text: str
    data: object
    spans: dict[Path, Span] = field(default_factory=dict)
    key_spans: dict[Path, Span] = field(default_factory=dict)

    def span(self, path: Path, *, key: bool = False) -> Span:
        """The closest known position for `path`: the key itself, or its nearest ancestor."""
        path = tuple(path)
        table = self.key_spans if key else self.spans
        while path:
            if path in table:
                return table[path]
            if key and path in self.spans:
                return self.spans[path]
            path = path[:-1]
        return self.spans.get((), Span(self.file, 1, 1))


def load_text(text: str, file: str, diags: Diagnostics) -> Document | None:
    """Parse `text`; on failure add diagnostics and return None."""
    if len(text) > MAX_TEXT:
        diags.error("E005", f"the file holds {len(text) / 1024:,.0f} KiB of text; a spec is a few KiB, and more than {MAX_TEXT // 1024} KiB is refused", Span(file, 1, 1))
        return None
    if _report_tabs(text, file, diags):
        return None
    deep = _flow_too_deep(text)
    if deep:  # PyYAML's scanner is quadratic in the depth of [ and {: refuse before parsing
        diags.error("E005", f"values here nest more than {MAX_DEPTH} levels deep; refusing to load", Span(file, *deep))
        return None
    root = _compose(text, file, diags)
    if root is False:
        return None
    if root is None or (root.tag == "tag:yaml.org,2002:null" and root.value == ""):
        what = "holds only comments" if text.strip() else "is empty"
        diags.error("E006", f"the file {what}; expected a spec mapping with 'archc', 'name', 'input' and 'nodes'", Span(file, 1, 1))
        return None
    if not _check_alias_expansion(root, text, file, diags):
        return None
    doc = Document(file, text, None)
    builder = _Builder(doc, diags)
    doc.data = builder.build(root, ())
    if diags.has_errors:
        return None
    if not isinstance(doc.data, dict):
        kind = type(doc.data).__name__ if doc.data is not None else "null"
        kind = {"list": "a list", "str": "a string", "int": "a number", "float": "a number", "bool": "a boolean"}.get(kind, kind)
        diags.error("E007", f"a spec must be a mapping of keys to values, but this file is {kind}", doc.span(()))
        return None
    return doc


def _compose(text: str, file: str, diags: Diagnostics):
    """The one document's node tree (None when there is none), or False after an error."""
    loader = None
    try:
        loader = _Loader(text)  # the reader checks for unprintable characters here
        return loader.get_single_node()
    except yaml.reader.ReaderError as e:
        line, col = _line_col(text, e.position)
        char = e.character if isinstance(e.character, int) else ord(e.character)
        diags.error("E001", f"invalid YAML: the unprintable character U+{char:04X} is not allowed", Span(file, line, col))
    except yaml.composer.ComposerError as e:
        if e.problem == "but found another document":
            m = e.problem_mark
            diags.error("E001", "expected a single YAML document, but '---' starts another one", Span(file, m.line + 1, m.column + 1))
        else:
            _report_marked(e, text, file, diags)
    except yaml.MarkedYAMLError as e:
        _report_marked(e, text, file, diags)
    except RecursionError:  # PyYAML's composer recurses once per level
        m = _too_deep(text)
        span = Span(file, m.line + 1, m.column + 1) if m else Span(file, 1, 1)
        diags.error("E005", f"values here nest more than {MAX_DEPTH} levels deep; refusing to load", span)
    finally:
        if loader is not None:
            loader.dispose()
    return False


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, noting on each scalar node the tag written on it, if any: the
    composer replaces a missing tag (or the non-specific `!`) by YAML 1.1's resolution, and
    after that `!!int 1:30` looks just like `1:30`."""

    def compose_scalar_node(self, anchor):
        written = self.peek_event().tag  # None, '!' or a full tag
        node = super().compose_scalar_node(anchor)
        node.written_tag = written
        return node


_FLOW = re.compile(r"""[\[\]{}"'#\n]""")


def _flow_too_deep(text: str) -> tuple[int, int] | None:
    """(line, column) of the first '[' or '{' nested more than MAX_DEPTH deep, skipping
    quoted text and comments; a cheap over-approximation of YAML's flow nesting."""
    depth, line, line_start, quote, comment = 0, 1, 0, None, False
    for m in _FLOW.finditer(text):
        c, i = m.group(), m.start()
        if c == "\n":
            line, line_start, comment = line + 1, i + 1, False
        elif comment:
            continue
        elif quote:
            if c == quote and not (quote == '"' and _escaped(text, i)):
                quote = None
        elif c in "'\"":
            if i == line_start or text[i - 1] in " \t[{,:-?":
                quote = c
        elif c == "#":
            comment = i == line_start or text[i - 1] in " \t"
        elif c in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return line, i - line_start + 1
        else:
            depth = max(0, depth - 1)
    return None


def _escaped(text: str, i: int) -> bool:
    n = 0
    while i - n - 1 >= 0 and text[i - n - 1] == "\\":
        n += 1
    return n % 2 == 1


def _too_deep(text: str):
    """Where the nesting first passes MAX_DEPTH, found by PyYAML's (iterative) scanner."""
    opening = (yaml.FlowMappingStartToken, yaml.FlowSequenceStartToken, yaml.BlockMappingStartToken, yaml.BlockSequenceStartToken)
    closing = (yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken, yaml.BlockEndToken)
    depth = 0
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            depth += isinstance(token, opening) - isinstance(token, closing)
            if depth > MAX_DEPTH:
                return token.start_mark
    except yaml.YAMLError:
        pass
    return None


def _report_marked(e: yaml.MarkedYAMLError, text: str, file: str, diags: Diagnostics) -> None:
    """PyYAML's problem/context pair as one line. A problem found past the last line (an
    unclosed quote or bracket) is reported where the unclosed thing starts."""
    problem = (e.problem or str(e)).strip()
    context = (e.context or "").strip()
    mark, ctx = e.problem_mark, e.context_mark
    n_lines = max(1, len(text.splitlines()))
    if mark is None or mark.line >= n_lines:
        mark, ctx = (ctx, None) if ctx is not None else (mark, ctx)
        if context and mark is e.context_mark:
            context += " that starts here"
    if problem == "second occurrence" and ctx is not None:  # duplicate anchor
        problem, context = context.replace("; first occurrence", ""), f"first defined at line {ctx.line + 1}"
    elif context and ctx is not None:
        context += f" that starts at line {ctx.line + 1}, column {ctx.column + 1}"
    if problem == "mapping values are not allowed here" and mark is not None:
        before = text.splitlines()[mark.line][: mark.column]
        if ": " in before or before.rstrip().endswith(":"):
            problem += "; this line has a ':' already: quote a value that holds ': ', or look for a missing ':' or '{'"
        else:
            problem += "; check the indentation of this line"
    if mark is None:
        span = Span(file, 1, 1)
    elif mark.line >= n_lines:  # past the end, nothing unclosed to point at: the last line's end
        span = Span(file, n_lines, len(text.splitlines()[-1]) + 1 if text.strip() else 1)
    else:
        span = Span(file, mark.line + 1, mark.column + 1)
    diags.error("E001", f"invalid YAML: {problem}" + (f" ({context})" if context else ""), span)


_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")  # what YAML counts as a line break (PyYAML's marks too)


def _line_col(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of `index`, lines broken as YAML breaks them (\r alone too)."""
    breaks = list(_BREAK.finditer(text, 0, index))
    return len(breaks) + 1, index - (breaks[-1].end() if breaks else 0) + 1


def load_file(path: str, diags: Diagnostics, display: str | None = None) -> Document | None:
    display = display or path
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            diags.error("E000", f"{path} is a directory; give a spec file")
            return None
        if not stat.S_ISREG(info.st_mode):  # a device or FIFO could block or never end
            diags.error("E000", f"{path} is not a regular file (a device, FIFO or socket); give a spec file")
            return None
        with open(path, "rb") as f:
            raw = f.read(MAX_TEXT + 1)  # never more than the limit, whatever the file claims
    except FileNotFoundError:
        diags.error("E000", f"no such file: {path}")
        return None
    except OSError as e:
        diags.error("E000", f"cannot read {path}: {e.strerror}")
        return None
    if len(raw) > MAX_TEXT:
        diags.error("E005", f"the file is larger than {MAX_TEXT // 1024} KiB; a spec is a few KiB, and more is refused", Span(display, 1, 1))
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        col = len(raw[raw.rfind(b"\n", 0, e.start) + 1 : e.start].decode("utf-8")) + 1  # in characters
        diags.error("E001", f"the file is not valid UTF-8 text: byte 0x{raw[e.start]:02x} cannot be decoded; save it as UTF-8", Span(display, line, col))
        return None
    return load_text(text, display, diags)


def _report_tabs(text: str, file: str, diags: Diagnostics) -> bool:
    found = False
    for i, line in enumerate(text.splitlines(), start=1):
        m = _TAB_INDENT.match(line)
        if m:
            diags.error("E002", "tab character in indentation; YAML indents with spaces only", Span(file, i, m.end()))
            found = True
    return found


def _check_alias_expansion(root, text: str, file: str, diags: Diagnostics) -> bool:
    """Compute the expanded size and the depth of the node graph without expanding it.
    Aliases make it a DAG, or a cycle when an alias sits inside its own anchor (`&a [*a]`)."""
    sizes: dict[int, int] = {}
    heights: dict[int, int] = {}
    visiting: set[int] = set()  # nodes whose children are still being sized
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        if not done:
            if id(node) in sizes:
                continue
            if id(node) in visiting:
                m = node.start_mark
                diags.error("E005", "this YAML anchor contains an alias to itself (a recursive alias); refusing to load", Span(file, m.line + 1, m.column + 1))
                return False
            visiting.add(id(node))
            stack.append((node, True))
            stack.extend((c, False) for c in _children(node) if id(c) not in sizes)
            continue
        visiting.discard(id(node))
        children = _children(node)
        total = 1 + sum(sizes[id(c)] for c in children)
        if total > MAX_EXPANDED_NODES and all(sizes[id(c)] <= MAX_EXPANDED_NODES for c in children):
            m = node.start_mark
            what = "YAML aliases here expand to" if len(sizes) < MAX_EXPANDED_NODES else "this holds"
            diags.error(
                "E005",
                f"{what} more than {MAX_EXPANDED_NODES:,} values{' (an alias bomb?)' if 'alias' in what else ''}; refusing to load",
                Span(file, m.line + 1, m.column + 1),
            )
            return False
        sizes[id(node)] = min(total, MAX_EXPANDED_NODES + 1)
        heights[id(node)] = 1 + max((heights[id(c)] for c in children), default=0)
        if heights[id(node)] > MAX_DEPTH:
            m = _too_deep(text) or node.start_mark  # the scanner points at the 65th level from the top
            diags.error("E005", f"values here nest more than {MAX_DEPTH} levels deep; refusing to load", Span(file, m.line + 1, m.column + 1))
            return False
    return True


def _children(node) -> list:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


class _Builder:
    def __init__(self, doc: Document, diags: Diagnostics):
        self.doc, self.diags = doc, diags

    def span_of(self, node) -> Span:
        m = node.start_mark
        return Span(self.doc.file, m.line + 1, m.column + 1)

    def build(self, node, path: Path):
        self.doc.spans[path] = self.span_of(node)
        if node.tag not in _SAFE_TAGS:
            self.diags.error("E004", f"the tag '{_short_tag(node.tag)}' is not allowed; specs hold plain data only", self.span_of(node))
            return None
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node)
        kind = "map" if isinstance(node, yaml.MappingNode) else "seq"
        if node.tag != f"tag:yaml.org,2002:{kind}":  # only an explicit tag differs
            tag = _short_tag(node.tag)
            meant = _COLLECTIONS.get(tag, "a single value")
            self.diags.error("E001", f"invalid YAML value: the tag '{tag}' is for {meant}, but this is {_COLLECTIONS['!!' + kind]}", self.span_of(node))
            return None
        if kind == "map":
            return self._mapping(node, path)
        return [self.build(child, path + (i,)) for i, child in enumerate(node.value)]

    def _scalar(self, node):
        """A scalar by YAML 1.2's core schema. Untagged: a plain one is resolved by its form,
        a quoted or block one is a string. The non-specific tag `!` and `!!str` make a string;
        `!!null`, `!!bool`, `!!int` and `!!float` take exactly the forms that the core schema
        resolves to them, and anything else under them is an error, not a YAML 1.1 reading
        (`!!int "1:30"` is not 90, `!!bool yes` is not true)."""
        written = getattr(node, "written_tag", None)
        if written is None:
            return self._plain_scalar(node) if node.style is None else node.value
        kind = _short_tag(written)[2:] if written.startswith("tag:yaml.org,2002:") else "str"  # '!'
        if kind in ("str", "timestamp"):  # dates are just text to us
            return node.value
        if kind in ("map", "seq"):
            self.diags.error("E001", f"invalid YAML value: the tag '!!{kind}' is for {_COLLECTIONS['!!' + kind]}, but this is a single value", self.span_of(node))
            return None
        v = node.value
        if kind == "null" and _NULL_12.match(v):
            return None
        if kind == "bool" and v in _BOOL_12:
            return _BOOL_12[v]
        if kind == "int" and (_INT_12.match(v) or _OCT_12.match(v) or _HEX_12.match(v)):
            return self._plain_scalar(node)
        if kind == "float" and v.lstrip("+-").lstrip(".").lower() in ("nan", "inf", "infinity"):
            self.diags.error("E008", f"'{v}' is not a finite number; a spec's numbers must be finite", self.span_of(node))
            return None
        if kind == "float" and _FLOAT_12.match(v):  # !!float 4 is 4.0
            return self._float(v, node)
        hint = next((f"; {why}" for pattern, why in _YAML_1_1_ONLY if pattern.match(v)), "")
        self.diags.error("E001", f"invalid YAML value: '{v}' is not a valid !!{kind}: YAML 1.2 writes {_TAG_FORMS[kind]}{hint}", self.span_of(node))
        return None

    def _integer(self, value: int | str, node, base: int = 10) -> int | None:
        """An integer (or its digits in `base`) of at most 2^53 in size, what JSON and a float
        hold exactly; a larger one is no size, count or seed a network needs, and would only
        overflow arithmetic later. Digits past 40 are refused unread."""
        if isinstance(value, str):
            value = int(value, base) if len(value) <= 40 else None
        if value is None or abs(value) > MAX_VALUE:
            shown = node.value if len(node.value) <= 24 else node.value[:20] + "..."
            self.diags.error("E008", f"'{shown}' is too large; a spec's integers stay within 2^53 ({MAX_VALUE:,})", self.span_of(node))
            return None
        return value

    def _plain_scalar(self, node):
        """An unquoted scalar, by YAML 1.2's core schema; NaN and infinity are refused."""
        v = node.value
        if _NULL_12.match(v):
            return None
        if v in _BOOL_12:
            return _BOOL_12[v]
        if _INT_12.match(v):
            return self._integer(v, node)
        if _OCT_12.match(v):
            return self._integer(v[2:], node, 8)
        if _HEX_12.match(v):
            return self._integer(v[2:], node, 16)
        if _NONFINITE_12.match(v):
            self.diags.error("E008", f"'{v}' is not a finite number; a spec's numbers must be finite", self.span_of(node))
            return None
        if _FLOAT_12.match(v):
            return self._float(v, node)
        return v

    def _float(self, v: str, node) -> float | None:
        """A decimal's value; one that overflows to infinity (1e999) is refused."""
        f = float(v)
        if not math.isfinite(f):
            self.diags.error("E008", f"'{v}' overflows to infinity; a spec's numbers must be finite", self.span_of(node))
            return None
        return f

    def _mapping(self, node, path: Path) -> dict:
        out: dict = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.diags.error("E004", "YAML merge keys ('<<') are not supported; write the keys out", self.span_of(key_node))
                continue
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _SAFE_TAGS:
                self.diags.error("E004", "mapping keys must be plain names", self.span_of(key_node))
                continue
            key = key_node.value  # as written: YAML 1.1 would read `on:` as true and `1_0:` as 10
            if key in out:
                first = self.doc.key_spans[path + (key,)]
                self.diags.error(
                    "E003",
                    f"duplicate key '{key}' (first defined at line {first.line})",
                    self.span_of(key_node),
                )
                continue
            self.doc.key_spans[path + (key,)] = self.span_of(key_node)
            out[key] = self.build(value_node, path + (key,))
        return out


def _short_tag(tag: str) -> str:
    return "!!" + tag[len("tag:yaml.org,2002:"):] if tag.startswith("tag:yaml.org,2002:") else tag
