"""Training curves in the manner of the paper's Figures 8-11: one panel per quantity (training
accuracy, training loss, validation accuracy, validation loss) against the epoch, one line per
run. The same function draws a single run (curves.png in its run directory) and the overlay of
`archc compare --plot`. Files are written atomically, png and svg alike.
"""
from __future__ import annotations

import io
from pathlib import Path

from runtime.files import write_bytes

# (metrics column, panel title, y label), in the order of Figures 8-11.
PANELS = (
    ("train_acc", "Training accuracy", "accuracy"),
    ("train_loss", "Training loss", "loss"),
    ("val_acc", "Validation accuracy", "accuracy"),
    ("val_loss", "Validation loss", "loss"),
)


def plot(runs: list[tuple[str, list[dict]]], paths: list, title: str | None = None) -> list[Path]:
    """Draw `runs` ((label, metrics rows) pairs) into each of `paths` (.png, .svg or .pdf)."""
    _config_dir()
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; also keeps a test run from opening windows
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    last_epoch = max((r["epoch"] for _, rows in runs for r in rows), default=1)

    # Fixed margins: constrained layout would cost more than the drawing itself.
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    fig.subplots_adjust(left=0.07, right=0.98, top=0.91, bottom=0.16 if len(runs) > 1 else 0.08, hspace=0.35, wspace=0.22)
    for ax, (column, panel, ylabel) in zip(axes.flat, PANELS):
        peak = 0.0
        for label, rows in runs:
            points = [(r["epoch"], r[column]) for r in rows if r.get(column) is not None]
            if points:
                xs, ys = zip(*points)
                peak = max(peak, *ys)
                ax.plot(xs, ys, marker="o", markersize=3, label=label)  # markers: a 1-epoch run is still visible
        ax.set_title(panel)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if column.endswith("acc"):
            ax.set_ylim(0, min(1.0, peak * 1.1) or 1.0)  # from zero, so chance and progress read at a glance
        ax.set_xlim(0.5, last_epoch + 0.5)  # whole epochs, even for a run of one
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if len(runs) > 1 and handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(runs)), frameon=False)
    if title:
        fig.suptitle(title)
    written = []
    for path in paths:
        path = Path(path)
        buffer = io.BytesIO()
        with plt.rc_context({"svg.fonttype": "none"}):  # svg text stays text: searchable, and smaller
            fig.savefig(buffer, format=path.suffix.lstrip(".") or "png", dpi=120)
        write_bytes(path, buffer.getvalue())
        written.append(path)
    plt.close(fig)
    return written


def _config_dir() -> None:
    """Matplotlib keeps its settings in ~/.config/matplotlib and its font cache in
    ~/.cache/matplotlib, and warns on every run when it cannot write there (a read-only or
    missing home): give it one folder of archc's instead, the same each run, so that its font
    cache is built once."""
    import os
    import tempfile

    if os.environ.get("MPLCONFIGDIR"):
        return
    try:
        homes = [Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"), Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")]
    except RuntimeError:  # no home at all
        homes = []
    if len(homes) == 2 and all(_writable(h / "matplotlib") for h in homes):
        return
    private = Path(tempfile.gettempdir()) / f"archc-matplotlib-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    private.mkdir(mode=0o700, exist_ok=True)
    os.environ["MPLCONFIGDIR"] = str(private)


def _writable(folder: Path) -> bool:
    """Whether `folder` is a folder archc could write in, or create (runtime.paths's check)."""
    from runtime.errors import RuntimeUsageError
    from runtime.paths import output_dir

    try:
        output_dir(folder, "MPLCONFIGDIR", may_create=True)
    except RuntimeUsageError:
        return False
    return True
