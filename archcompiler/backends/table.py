"""The layer table, in the spirit of the paper's Figure 7, Keras summary() and torchinfo."""
from __future__ import annotations

from archcompiler.ir.graph import Graph


def fmt_shape(shape: tuple) -> str:
    """H x W x C, as the paper writes it; vectors as their length; a block's several outputs
    as their count (each has a row of its own)."""
    if shape and isinstance(shape[0], (list, tuple)):
        return f"{len(shape)} outputs"
    if len(shape) == 3:
        c, h, w = shape
        return f"{h} x {w} x {c}"
    return str(shape[0])


def fmt_count(n: int) -> str:
    return f"{n:,}"


def fmt_flops(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.3f} {unit}"
    return str(n)


def shown(d: int, expand: bool = False, depth: int | None = None) -> bool:
    """Whether a node `d` composites deep is listed. The table and the diagram both ask here."""
    return d == 0 or (expand and (depth is None or d <= depth))


def rows(graph: Graph, expand: bool = False, depth: int | None = None) -> list[dict]:
    """One row per top-level layer, or per layer at every depth when expanding."""
    out = []
    for d, node in graph.walk():
        if not shown(d, expand, depth):
            continue
        row = {"depth": d, "name": node.name, "type": node.type if node.kind != "part" else f"{node.type}.{node.meta['output']}"}
        if node.kind == "repeat":
            row["repeat"] = node.meta["repeat"]
        out.append(
            row | {
                "shape": [list(s) for s in node.meta["shapes"]] if "shapes" in node.meta else list(node.shape),
                "params": node.meta["params"],
                "flops": node.meta["flops"],
                "activation_bytes": node.meta["activation_bytes"],
            }
            | ({"saved_activations_bytes": node.meta["saved_activations_bytes"]} if "saved_activations_bytes" in node.meta else {})
        )
    return out


def fmt_bytes(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def render_table(name: str, graph: Graph, totals: dict, expand: bool = False, depth: int | None = None, macs: bool = False,
                 memory=None) -> str:
    """The layer table as `archc check` prints it. `macs` counts multiply-adds (half the FLOPs,
    as torchvision's and ptflops' "GFLOPS" do) instead of FLOPs; with `memory`
    (passes.memory.Memory), a column of saved activations per layer and the step's memory below."""
    from runtime.table import render_table as table  # the one renderer (rich); imports no torch

    ops, unit = (lambda n: n // 2, "MACs") if macs else (lambda n: n, "FLOPs")
    extra = (lambda cells: cells) if memory else (lambda cells: ())
    header = ("Layer", "Type", "Output (H x W x C)", "Params", unit) + extra(("Saved",))
    body = [
        ("  " * r["depth"] + r["name"], r["type"] + (f" x{r['repeat']}" if "repeat" in r else ""), fmt_shape(r["shape"]),
         fmt_count(r["params"]), fmt_flops(ops(r["flops"]))) + extra((fmt_bytes(r.get("saved_activations_bytes", 0)),))
        for r in rows(graph, expand, depth)
    ]
    inp = ("input", "", fmt_shape(graph.input.shape), "", "") + extra(("",))
    total = ("Total", "", "", fmt_count(totals["params"]), fmt_flops(ops(totals["flops"]))) + extra((fmt_bytes(memory.saved_activations_bytes) if memory else "",))
    lines = table(header, [inp, *body, total], right=[False, False, False, True, True] + [True] * len(extra((1,))), rule_before=[len(body) + 1])
    act = totals["activation_bytes"] / 2**20
    convention = "MACs count a multiply-add as 1 (as torchvision and ptflops do)" if macs else "FLOPs count a multiply-add as 2"
    out = f"{name}\n{lines}"
    if len(graph.results) > 1:  # which rows the model returns, when it is not simply the last
        out += f"returns {len(graph.results)} outputs: " + ", ".join(
            f"{name} ({fmt_shape(graph.nodes[o].shape)})" for name, o in zip(graph.result_names, graph.results)) + "\n"
    out += f"activations at batch 1 (fp32): {act:.1f} MiB; {convention}, forward pass, batch 1"
    return out + ("\n" + memory_summary(memory) if memory else "")


def memory_summary(m) -> str:
    """Two lines: what a step holds, and its predicted peak (docs/memory.md)."""
    what = f"{m.mode}, batch {m.batch_size}, amp {m.amp}" + (f", {m.optimizer}" if m.mode == "train" else "")
    parts = [f"params {fmt_bytes(m.params_bytes)}"]
    if m.mode == "train":
        parts += [f"grads {fmt_bytes(m.grads_bytes)}", f"{m.optimizer} state {fmt_bytes(m.optimizer_bytes)}",
                  f"saved activations {fmt_bytes(m.saved_activations_bytes)} (column Saved)"]
    return f"memory ({what}): " + ", ".join(parts) + f"\npredicted peak of a {'training step' if m.mode == 'train' else 'forward pass'}: {fmt_bytes(m.peak_bytes)}"
