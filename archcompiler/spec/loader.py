"""YAML text -> positioned document.

PyYAML's composer gives a node tree with marks. We walk it ourselves instead of letting
PyYAML construct Python objects, so that we can (a) remember the source position of every
key and value, (b) reject duplicate keys, unsafe tags and merge keys, and (c) refuse alias
bombs before expanding them, in time and memory bounded by the size of the text.
"""
from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field

import yaml

from archcompiler.spec.diagnostics import Diagnostics, Span

Path = tuple  # a JSON-pointer-like path of mapping keys and list indices

# Only plain data: no python/*, no binary, no application tags.
_SAFE_TAGS = {
    f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "seq", "map", "timestamp")
}
# A spec is a few hundred nodes. Anything that expands past this through aliases is refused.
MAX_EXPANDED_NODES = 100_000
_TAB_INDENT = re.compile(r"^[ ]*\t")
# YAML 1.1 reads `1e-3` as a string; YAML 1.2 (and every user) reads it as a number.
_FLOAT_12 = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)[eE][-+]?[0-9]+$")


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
    if _report_tabs(text, file, diags):
        return None
    try:
        roots = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        span = Span(file, mark.line + 1, mark.column + 1) if mark else Span(file, 1, 1)
        problem = (e.problem or str(e)).strip()
        context = f" ({e.context.strip()})" if e.context else ""
        diags.error("E001", f"invalid YAML: {problem}{context}", span)
        return None
    except yaml.YAMLError as e:  # reader errors: bad bytes, control characters
        diags.error("E001", f"invalid YAML: {e}", Span(file, 1, 1))
        return None
    if len(roots) > 1:
        m = roots[1].start_mark
        diags.error("E001", "expected a single YAML document, found several ('---')", Span(file, m.line + 1, m.column + 1))
        return None
    if not roots or roots[0] is None:
        diags.error("E006", "the file is empty; expected a spec mapping with 'archc', 'name', 'input' and 'nodes'", Span(file, 1, 1))
        return None
    root = roots[0]
    if not _check_alias_expansion(root, file, diags):
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


def load_file(path: str, diags: Diagnostics, display: str | None = None) -> Document | None:
    display = display or path
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        diags.error("E000", f"no such file: {path}")
        return None
    except OSError as e:
        diags.error("E000", f"cannot read {path}: {e.strerror}")
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        diags.error("E001", "the file is not valid UTF-8 text", Span(display, line, col))
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


def _check_alias_expansion(root, file: str, diags: Diagnostics) -> bool:
    """Compute the expanded size of the (DAG-shaped) node tree without expanding it."""
    sizes: dict[int, int] = {}
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        children = _children(node)
        if not done:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
            continue
        total = 1 + sum(sizes[id(c)] for c in children)
        if total > MAX_EXPANDED_NODES and all(sizes[id(c)] <= MAX_EXPANDED_NODES for c in children):
            m = node.start_mark
            diags.error(
                "E005",
                f"YAML aliases here expand to more than {MAX_EXPANDED_NODES:,} values (an alias bomb?); refusing to load",
                Span(file, m.line + 1, m.column + 1),
            )
            return False
        sizes[id(node)] = min(total, MAX_EXPANDED_NODES + 1)
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
        self.constructor = yaml.constructor.SafeConstructor()

    def span_of(self, node) -> Span:
        m = node.start_mark
        return Span(self.doc.file, m.line + 1, m.column + 1)

    def build(self, node, path: Path):
        self.doc.spans[path] = self.span_of(node)
        if node.tag not in _SAFE_TAGS:
            self.diags.error("E004", f"the tag '{_short_tag(node.tag)}' is not allowed; specs hold plain data only", self.span_of(node))
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(child, path + (i,)) for i, child in enumerate(node.value)]
        if node.tag.endswith(":str") and node.style is None and _FLOAT_12.match(node.value):
            return float(node.value)
        if node.tag.endswith(":timestamp"):
            return node.value  # dates are just text to us
        try:
            value = self.constructor.construct_object(node)
        except yaml.YAMLError as e:
            self.diags.error("E001", f"invalid YAML value: {getattr(e, 'problem', e)}", self.span_of(node))
            return None
        if isinstance(value, (datetime.date, bytes)):
            return node.value
        return value

    def _mapping(self, node, path: Path) -> dict:
        out: dict = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.diags.error("E004", "YAML merge keys ('<<') are not supported; write the keys out", self.span_of(key_node))
                continue
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _SAFE_TAGS:
                self.diags.error("E004", "mapping keys must be plain names", self.span_of(key_node))
                continue
            key = self.build(key_node, path + ("<key>",))
            self.doc.spans.pop(path + ("<key>",), None)
            key = "null" if key is None else str(key) if not isinstance(key, bool) else str(key).lower()
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
