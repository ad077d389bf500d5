"""Diagnostics are data: one type, three renderings (concise, with a caret snippet, JSON)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Span:
    """A 1-based source position."""

    file: str
    line: int
    column: int


@dataclass
class Diagnostic:
    code: str  # stable id, e.g. "E200"; the docs list every code
    severity: str  # "error" | "warning"
    message: str
    span: Span | None = None
    notes: list[str] = field(default_factory=list)
    # Inside a composite's body, `span` is the node that uses it; `inner` is where in the body
    # the problem lies (in the block's own file), for a tool that has no call site to show.
    inner: Span | None = None

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def concise(self) -> str:
        where = f"{self.span.file}:{self.span.line}:{self.span.column}: " if self.span else ""
        return f"{where}{self.severity}[{self.code}]: {self.message}"

    def pretty(self, sources: dict[str, str] | None = None) -> str:
        """Concise line, then the source line with a caret under the column (like PyYAML)."""
        lines = [self.concise()]
        text = (sources or {}).get(self.span.file) if self.span else None
        if text is not None and self.span is not None:
            src = text.splitlines()
            if 1 <= self.span.line <= len(src):
                code = src[self.span.line - 1].expandtabs(1)
                gutter = f"{self.span.line:>4} | "
                lines.append(gutter + code)
                lines.append(" " * (len(gutter) + self.span.column - 1) + "^")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {
            "file": self.span.file if self.span else None,
            "line": self.span.line if self.span else None,
            "column": self.span.column if self.span else None,
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "notes": list(self.notes),
        }


class Diagnostics(list):
    """An ordered collection of diagnostics, with helpers to add them."""

    def error(self, code: str, message: str, span: Span | None = None, notes=()) -> Diagnostic:
        d = Diagnostic(code, "error", message, span, list(notes))
        self.append(d)
        return d

    def warning(self, code: str, message: str, span: Span | None = None, notes=()) -> Diagnostic:
        d = Diagnostic(code, "warning", message, span, list(notes))
        self.append(d)
        return d

    @property
    def has_errors(self) -> bool:
        return any(d.is_error for d in self)


def did_you_mean(name: str, choices) -> str:
    """' (did you mean 'x'?)' for the closest choice, or ''."""
    import difflib

    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""
