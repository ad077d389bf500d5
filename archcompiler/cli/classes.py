"""How many classes the model's head outputs: the data's, unless the spec or a flag pins it.

A spec written for Tiny ImageNet ends in `fc: {type: affine, out: 200}`. Trained on a 10-class
set as written, 190 outputs would never see a label. So `archc train` (and eval and predict,
from the checkpoint) rewrite that one number in the spec's text and compile it again: the run
directory's spec.yaml is then exactly the model that was trained, comments and all.
"""
from __future__ import annotations

import re

from archcompiler.errors import ArchcError


def head(compiled) -> tuple[str, int | None]:
    """The output node's name and its literal `out` (None when it is not a top-level affine
    with an integer `out` written in the spec, and so cannot be rewritten)."""
    graph = compiled.graph
    node = graph.nodes[graph.output]
    out = compiled.result.data.get("nodes", {}).get(graph.output, {})
    if node.type != "affine" or not isinstance(out, dict) or type(out.get("out")) is not int:
        return node.name, None
    return node.name, out["out"]


def with_classes(compiled, classes: int):
    """`compiled` with its head rewritten to output `classes`; itself when it already does."""
    from archcompiler.api import compile as compile_spec

    name, out = head(compiled)
    if out == classes:
        return compiled
    if out is None:
        raise ArchcError(f"{compiled.name}: cannot set the number of classes to {classes}: the output node '{name}' is not an "
                         "affine with a number as its 'out'; edit the spec instead")
    span = compiled.result.doc.spans[("nodes", name, "out")]
    lines = compiled.spec_text.splitlines(keepends=True)
    line = lines[span.line - 1]
    start = span.column - 1
    match = re.compile(r"[+]?[0-9_]+").match(line, start)
    if match is None:  # unreachable for a spec the front-end read, but never write a wrong model
        raise ArchcError(f"{compiled.result.file}:{span.line}: cannot find the number {out} to rewrite")
    lines[span.line - 1] = line[:start] + str(classes) + line[match.end():]
    return compile_spec("".join(lines), file=compiled.result.file)


def require_classifier(compiled, command: str = "archc train trains") -> None:
    """Bad input (exit 1) unless the model outputs one vector of class scores."""
    if len(compiled.output_shapes) > 1:
        names = ", ".join(compiled.graph.results)
        raise ArchcError(f"{command} classifiers, whose output is a vector of class scores; {compiled.name} returns "
                         f"{len(compiled.output_shapes)} outputs ({names}); check, render, emit, export and bench handle such a model")
    if len(compiled.output_shape) != 1:
        raise ArchcError(f"{command} classifiers, whose output is a vector of class scores; {compiled.name} outputs a "
                         f"{' x '.join(map(str, compiled.output_shape))} map (dense prediction is not supported yet)")


def decide(compiled, data_classes: int, pinned: int | None, source: str) -> tuple[object, str | None]:
    """The model to train and the line that says what was changed (None: nothing). `pinned` comes from
    --num-classes or the spec's train: num_classes (`source` says which), else None."""
    require_classifier(compiled)
    name, out = head(compiled)
    target = pinned if pinned is not None else data_classes
    if out is None and pinned is None:  # a head archc cannot rewrite: train it as written if the labels fit
        outputs = compiled.output_shape[0]
        if outputs < data_classes:
            raise ArchcError(f"the data has {data_classes} classes but {compiled.name} has {outputs} outputs; "
                             f"make '{name}' output {data_classes} or more")
        return compiled, None
    if target < data_classes:
        raise ArchcError(f"{source} is {target} but the data has {data_classes} classes; the head needs at least {data_classes}")
    adjusted = with_classes(compiled, target)
    if pinned is None and out != target:
        how = f"'{name}' outputs {target} instead of the spec's {out}"
        return adjusted, f"classes: the data has {data_classes}, so {how} (pin it with --num-classes or train: num_classes:)"
    if pinned is not None and out != target:
        return adjusted, f"classes: '{name}' outputs {target} ({source}; the spec says {out}, the data has {data_classes})"
    return adjusted, None  # the spec already says what the data needs: nothing was changed, nothing to say
