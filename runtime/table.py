"""The one table renderer: `archc check`, `compare` and `bench` print their tables through it.

Text is laid out by rich (columns two spaces apart, a dashed rule under the header and before
any row asked for, trailing spaces trimmed: the plain look that diffs and golden files keep);
markdown is a GitHub pipe table. Cells are plain text, never rich markup: a cell such as
"[95% CI]" prints as written. Imports no torch; rich costs a few milliseconds to import.
"""
from __future__ import annotations

import io
from collections.abc import Sequence

FORMATS = ("text", "markdown")


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, right: Sequence[bool] | None = None,
                 fmt: str = "text", rule_before: Sequence[int] = ()) -> str:
    """`rows` of strings under `header`; `right[i]` right-aligns column i; in text, a dashed
    rule is drawn before each row index in `rule_before` (e.g. a Total row)."""
    right = list(right) if right is not None else [False] * len(header)
    if fmt == "markdown":
        return _markdown(header, rows, right)
    if fmt != "text":
        raise ValueError(f"unknown table format {fmt!r}; choose from {', '.join(FORMATS)}")
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    justify = ["right" if flag else "left" for flag in right]
    rule = [Text("-" * w) for w in widths]
    table = Table(box=None, padding=(0, 1), pad_edge=False, show_header=False, show_edge=False)
    for flag in right:
        table.add_column(justify="right" if flag else "left", no_wrap=True)  # (overflow="ignore" would undo justify)
    table.add_row(*(Text(h, justify=j) for h, j in zip(header, justify)))
    table.add_row(*rule)
    for i, row in enumerate(rows):
        if i in rule_before:
            table.add_row(*rule)
        table.add_row(*(Text(str(c), justify=j) for c, j in zip(row, justify)))
    out = io.StringIO()
    Console(file=out, width=sum(widths) + 2 * len(widths) + 10, color_system=None, force_terminal=False, highlight=False,
            emoji=False, soft_wrap=False).print(table)
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines()) + "\n"


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]], right: list[bool]) -> str:
    def line(cells) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |\n"

    return line(header) + line("---:" if r else "---" for r in right) + "".join(line(r) for r in rows)
