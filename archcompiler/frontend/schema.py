"""The spec language's JSON Schema (2020-12), generated from the block registry, and the
translation of jsonschema errors into positioned diagnostics.

Two schemas come from one function:
- the *structural* schema the compiler validates first (node parameters are left open and
  checked per block type afterwards, with better messages);
- the *editor* schema that `archc schema` prints and `specs/*.yaml` point to, where every
  built-in block type's parameters are spelled out so an editor can complete them.
"""
from __future__ import annotations

import functools

from archcompiler.blocks.registry import IDENTIFIER, RESERVED_NAMES, RESERVED_PREFIX, Registry
from archcompiler.diagnostics import Diagnostics, did_you_mean
from archcompiler.frontend.loader import Document
from runtime.vocab import OPTIMIZERS  # the trainer's names, one definition (imports no torch)

FORMAT_VERSION = 1
SCHEMA_ID = "https://archc.dev/schema/spec-v1.json"
NODE_KEYS = ("type", "in", "repeat", "first", "when", "otherwise")  # a node's own keys; the rest are parameters
MAX_OUTPUTS = 8  # a block's outputs (an FPN level each, HRNet's branches): a handful
EXPRESSION = r"\$[A-Za-z_]"  # any string holding a $name is an expression (archcompiler.ir.arith)

TRAIN_SCHEMA = {
    "type": "object",
    "description": "Training recipe defaults; command-line flags override them.",
    "properties": {
        "epochs": {"type": "integer", "minimum": 1, "description": "passes over the training set"},
        "batch_size": {"type": "integer", "minimum": 1, "description": "images per step"},
        "optimizer": {"enum": list(OPTIMIZERS), "description": "optimizer"},
        "lr": {"type": "number", "exclusiveMinimum": 0, "description": "initial learning rate"},
        "weight_decay": {"type": "number", "minimum": 0, "description": "L2 (adam, sgd) or decoupled (adamw) decay"},
        "momentum": {"type": "number", "minimum": 0, "maximum": 1, "description": "sgd momentum"},
        "lr_schedule": {"enum": ["step", "cosine", "constant"], "description": "learning-rate schedule"},
        "lr_decay": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "description": "step schedule: factor per period"},
        "lr_decay_every": {"type": "integer", "minimum": 1, "description": "step schedule: period in iterations"},
        "warmup_steps": {"type": "integer", "minimum": 0, "description": "linear warm-up iterations"},
        "warmup_epochs": {"type": "number", "minimum": 0, "description": "linear warm-up in epochs (used when warmup_steps is 0)"},
        "label_smoothing": {"type": "number", "minimum": 0, "exclusiveMaximum": 1, "description": "cross-entropy label smoothing"},
        "augment": {
            "type": "object",
            "properties": {
                "flip": {"type": "boolean", "description": "random horizontal flip"},
                "crop_padding": {"type": "integer", "minimum": 0, "description": "random crop after this much zero padding"},
            },
            "additionalProperties": False,
        },
        "normalize_std": {"type": "boolean", "description": "also divide by the training std (the paper only subtracts the mean)"},
        "num_classes": {"type": "integer", "minimum": 1, "description": "pin the head's outputs (default: as many as the data has classes)"},
    },
    "additionalProperties": False,
}

PARAM_DECL = {
    "type": "object",
    "description": "A composite block parameter: a small JSON Schema fragment.",
    "properties": {
        "type": {"enum": ["integer", "number", "string", "boolean", "array"]},
        "items": {"$ref": "#/$defs/param", "description": "with type: array, what each item is (a pair: {type: integer, minimum: 1})"},
        "minItems": {"type": "integer", "minimum": 0},
        "maxItems": {"type": "integer", "minimum": 0},
        "default": {},
        "minimum": {"type": "number"},
        "maximum": {"type": "number"},
        "exclusiveMinimum": {"type": "number"},
        "exclusiveMaximum": {"type": "number"},
        "enum": {"type": "array", "minItems": 1},
        "oneOf": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/param"}},
        "description": {"type": "string"},
    },
    "additionalProperties": False,
}


def _schema(registry: Registry | None, editor: bool) -> dict:
    # reserved words, and names with a leading "_" (nn.Module keeps its own state in _modules & co.)
    ident = {"type": "string", "pattern": IDENTIFIER, "not": {"anyOf": [{"enum": RESERVED_NAMES}, {"pattern": f"^{RESERVED_PREFIX}"}]}}
    ref = {"type": "string", "pattern": IDENTIFIER}
    node = {
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": {"type": "string", "pattern": IDENTIFIER, "description": "block type"},
            "in": {
                "description": "input node(s); default: the node above (or the block's input)",
                "oneOf": [{"$ref": "#/$defs/ref"}, {"type": "array", "items": {"$ref": "#/$defs/ref"}, "minItems": 1}],
                "x-expected": "a node name or a non-empty list of node names",
            },
            "repeat": {
                "description": "stack the block N times, each instance reading the one before (keys name.0, name.1, ...)",
                "oneOf": [{"type": "integer", "minimum": 1}, {"$ref": "#/$defs/substitution"}],
                "x-expected": "an integer of at least 1, or a $parameter expression",
            },
            "first": {
                "type": "object",
                "description": "with repeat: parameters of the first instance only (e.g. stride: 2)",
                "propertyNames": {"$ref": "#/$defs/identifier"},
            },
            "when": {
                "description": "an optional node: present only when this holds (true, false, or a condition over $parameters)",
                "oneOf": [{"type": "boolean"}, {"$ref": "#/$defs/substitution"}],
                "x-expected": "true, false or a condition over $parameters",
            },
            "otherwise": {"$ref": "#/$defs/ref", "description": "with when: the node that stands in when this one is left out (default: its input)"},
        },
    }
    if editor:
        node["allOf"] = [_editor_case(b) for b in registry]
    defs = {
        "identifier": ident,
        "ref": ref,
        "substitution": {"type": "string", "pattern": EXPRESSION, "description": "a composite parameter, $name, or arithmetic over them ($width * 4, 0.2 * $index / 16)"},
        "node": node,
        "nodes": {"type": "object", "minProperties": 1, "propertyNames": {"$ref": "#/$defs/identifier"}, "additionalProperties": {"$ref": "#/$defs/node"}},
        "param": PARAM_DECL,
        "block": {
            "type": "object",
            "required": ["nodes"],
            "properties": {
                "summary": {"type": "string"},
                "params": {"type": "object", "propertyNames": {"$ref": "#/$defs/identifier"}, "additionalProperties": {"$ref": "#/$defs/param"}},
                "inputs": {
                    "type": "array", "items": {"$ref": "#/$defs/identifier"}, "minItems": 1, "maxItems": 7, "uniqueItems": True,
                    "description": "named inputs besides `input` (a skip connection): a use lists them after its main input, in: [x, skip_source]; each binds $NAME_channels, $NAME_height, $NAME_width",
                },
                "nodes": {"$ref": "#/$defs/nodes"},
                "output": {
                    "description": "the output node (default: the last node), or a list of several (a use names them: outputs: [a, b])",
                    "oneOf": [{"$ref": "#/$defs/ref"}, {"type": "array", "items": {"$ref": "#/$defs/ref"}, "minItems": 2}],
                    "x-expected": "a node name, or a list of two or more node names",
                },
                "example": {
                    "type": "object",
                    "description": "an instance to draw and test the block with",
                    "properties": {
                        "input": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1, "maxItems": 3, "description": "input shape [C, H, W] or [N]"},
                        "inputs": {"type": "object", "propertyNames": {"$ref": "#/$defs/identifier"}, "description": "shapes of the named inputs",
                                   "additionalProperties": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1, "maxItems": 3}},
                        "params": {"type": "object", "propertyNames": {"$ref": "#/$defs/identifier"}},
                    },
                    "additionalProperties": False,
                },
            },
            "additionalProperties": False,
        },
        "train": TRAIN_SCHEMA,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "archc spec",
        "description": "A convolutional network as a YAML dataflow graph (archc spec language v1).",
        "type": "object",
        "required": ["archc"],
        "properties": {
            "archc": {"const": FORMAT_VERSION, "description": "spec format version"},
            "name": {"$ref": "#/$defs/identifier", "description": "model name (snake_case; the emitted class is its CamelCase)"},
            "summary": {"type": "string"},
            "input": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 3, "maxItems": 3, "description": "input shape [C, H, W]"},
            "nodes": {"$ref": "#/$defs/nodes"},
            "output": {
                "description": "the output node (default: the last node), or a list of several: the model returns them as a tuple (a backbone's feature maps)",
                "oneOf": [{"$ref": "#/$defs/ref"}, {"type": "array", "items": {"$ref": "#/$defs/ref"}, "minItems": 2}],
                "x-expected": "a node name, or a list of two or more node names",
            },
            "blocks": {"type": "object", "propertyNames": {"$ref": "#/$defs/identifier"}, "additionalProperties": {"$ref": "#/$defs/block"}},
            "train": {"$ref": "#/$defs/train"},
            "defaults": {
                "type": "object",
                "description": "spec-wide parameter values per block type, e.g. batchnorm: {eps: 0.001}; a node's own values win",
                "propertyNames": {"$ref": "#/$defs/identifier"},
                "additionalProperties": {"type": "object", "propertyNames": {"$ref": "#/$defs/identifier"}},
            },
        },
        "additionalProperties": False,
        "if": {"required": ["nodes"]},
        "then": {"required": ["name", "input"]},
        "else": {"required": ["blocks"]},
        "$defs": defs,
    }


def _items_substituted(frag: dict) -> dict:
    """`frag`, where a list's items may also be $parameter expressions (`kernel: [1, $k]`)."""
    out = dict(frag)
    if isinstance(frag.get("items"), dict) and "pattern" not in frag["items"]:  # names (a split's parts) stay names
        out["items"] = {"anyOf": [_items_substituted(frag["items"]), {"$ref": "#/$defs/substitution"}]}
    for key in ("oneOf", "anyOf"):
        if key in frag:
            out[key] = [_items_substituted(f) for f in frag[key]]
    return out


def _editor_case(block) -> dict:
    props = {"type": {"const": block.name}, "in": True, "repeat": True, "first": True, "when": True, "otherwise": True}
    if block.is_composite and len(block.outputs) > 1:
        props["outputs"] = {"type": "array", "items": {"$ref": "#/$defs/identifier"}, "minItems": len(block.outputs), "maxItems": len(block.outputs),
                            "description": f"names for its outputs ({', '.join(block.outputs)}), in that order"}
    for k, frag in block.param_schema()["properties"].items():
        props[k] = {"anyOf": [_items_substituted(frag), {"$ref": "#/$defs/substitution"}]}
        if "description" in frag:
            props[k]["description"] = frag["description"]
    return {
        "if": {"properties": {"type": {"const": block.name}}, "required": ["type"]},
        "then": {"description": block.summary, "properties": props, "additionalProperties": False},
    }


def editor_schema(registry: Registry) -> dict:
    return _schema(registry, editor=True)


@functools.lru_cache(maxsize=None)
def _validator_for(key: str, schema_json: str):
    import json

    from jsonschema import Draft202012Validator, validators

    # JSON Schema counts 16.0 as an integer; a layer width of 16.0 is a mistake in a spec
    # (and nn.Conv2d refuses it), so only true ints are integers here.
    types = Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, v: isinstance(v, int) and not isinstance(v, bool)
    )
    strict = validators.extend(Draft202012Validator, type_checker=types)
    return strict(json.loads(schema_json))


def declared_rules(decl: dict) -> dict:
    """A block parameter's declaration as the schema its values must meet: its default and
    description say nothing about them."""
    return {k: v for k, v in decl.items() if k not in ("default", "description")}


def validator(schema: dict):
    import json

    text = json.dumps(schema, sort_keys=True)
    return _validator_for(text, text)


def structural_validator():
    return validator(_schema(None, editor=False))


# ---------------------------------------------------------------- errors -> diagnostics

TYPE_NAMES = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "true or false", "object": "a mapping", "array": "a list", "null": "null"}


def where(path: tuple) -> str:
    """' in node 'stem'' and the like, for messages."""
    p = list(path)
    block = ""
    if p[:1] == ["blocks"] and len(p) > 1:
        block = f"block '{p[1]}'"
        p = p[2:]
    inner = ""
    if p[:1] == ["nodes"] and len(p) > 1:
        inner = f"node '{p[1]}'"
    elif p[:1] == ["params"] and len(p) > 1:
        inner = f"parameter '{p[1]}'"
    elif p[:1] == ["train"] and len(p) > 1:
        inner = "train"
    if inner and block:
        return f" in {inner} of {block}"
    return f" in {inner or block}" if inner or block else ""


def _show(v) -> str:
    if isinstance(v, str):
        return f"'{v}'" if v.isprintable() else ascii(v)  # a newline or a NUL, escaped
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, dict):
        return "a mapping" if v else "an empty mapping"
    if isinstance(v, list):
        return "a list" if v else "an empty list"
    return "null" if v is None else repr(v)


def _field(path: tuple) -> str:
    keys = [k for k in path if isinstance(k, str)]
    return f"'{keys[-1]}'" if keys else "the value"


def _subject(path: tuple) -> str:
    """What a value at `path` is, for messages: "node 'stem'", "'out' in node 'stem'"."""
    p = list(path)
    if len(p) == 2 and p[0] in ("nodes", "blocks"):
        return f"{p[0][:-1]} '{p[1]}'"
    if len(p) == 4 and p[0] == "blocks" and p[2] in ("nodes", "params"):
        return f"{'node' if p[2] == 'nodes' else 'parameter'} '{p[3]}' in block '{p[1]}'"
    return f"{_field(path)}{where(path)}"


def _expected(schema: dict) -> str:
    """'an integer >= 0' and the like, for one branch of a oneOf."""
    text = TYPE_NAMES.get(schema.get("type"), "")
    if text and "minimum" in schema:
        text += f" >= {schema['minimum']}"
    return text


def report_schema_errors(errors, doc: Document, diags: Diagnostics, base: tuple = (), allowed_extra=()) -> list[tuple]:
    """Turn jsonschema errors for `doc` at `base` into one diagnostic per real problem.
    Returns the paths the diagnostics point at."""
    seen = set()
    paths = []
    found = [t for err in sorted(errors, key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
             for t in _translate(err, base, allowed_extra)]
    said = {path for code, _, path, _ in found if code != "E199"}  # the fallback only where nothing better was said
    for code, msg, path, is_key in found:
        key = (code, path, msg)
        if key in seen or (code == "E199" and path in said):
            continue
        seen.add(key)
        paths.append(path)
        diags.error(code, msg, doc.span(path, key=is_key))
    return paths


def first_node_key(key: str) -> str:
    """Why `first:` (the first instance's own parameters) cannot hold the node key `key`."""
    return (f"'first' holds parameters of a repeated node's first instance, and '{key}' is a key of the node itself, "
            f"the same for every instance; to vary the first instance's structure, write it as a node of its own before the repeat")


def _translate(err, base: tuple, allowed_extra):
    path = base + tuple(err.absolute_path)
    v, inst, schema = err.validator, err.instance, err.schema
    in_schema = "propertyNames" in err.absolute_schema_path
    if in_schema:
        name = inst
        key_path = path + (name,)
        if path and path[-1] == "first" and name in NODE_KEYS:
            yield "E209", first_node_key(name), key_path, True
            return
        kind = {"nodes": "node", "blocks": "block", "params": "parameter", "defaults": "block type", "inputs": "input", "first": "parameter"}.get(path[-1] if path else "")
        if len(path) == 2 and path[0] == "defaults":
            kind = "parameter"
        what = kind or "the"  # "the name '_x' in ..." where the mapping's keys are of no one kind
        outer = where(path[:-1]) if path else ""
        if isinstance(name, str) and name in RESERVED_NAMES:
            yield "E105", f"{what} name '{name}'{outer} is reserved: it would clash with Python or nn.Module", key_path, True
        elif isinstance(name, str) and name.startswith(RESERVED_PREFIX) and name.isidentifier():
            yield "E105", f"{what} name '{name}'{outer} starts with '_': nn.Module keeps its own state in such attributes", key_path, True
        else:
            yield "E105", f"{what} name {_show(name)}{outer} is not an ASCII identifier (ASCII letters, digits and _, not starting with a digit)", key_path, True
        return
    if v == "additionalProperties":
        allowed = list(schema.get("properties", {})) + list(allowed_extra)
        for extra in [k for k in inst if k not in allowed]:
            yield "E101", f"unknown key '{extra}'{where(path + (extra,))}{did_you_mean(extra, allowed) or _expected_keys(allowed)}", path + (extra,), True
        return
    if v == "required":
        if not path and "else" in err.absolute_schema_path:  # neither a model nor a block library
            yield "E100", "missing required key 'nodes' (the model's layers), or 'blocks' for a library of composite blocks", path, False
            return
        in_node = len(path) >= 2 and path[-2] == "nodes"
        for missing in [k for k in err.validator_value if k not in inst]:
            noun = "parameter" if in_node and missing != "type" else "key"
            props = schema.get("properties") or (_schema(None, editor=False)["properties"] if not path else {})
            about = props.get(missing, {}).get("description")
            if missing == "archc":
                about = f"the spec format version; add 'archc: {FORMAT_VERSION}'"
            about = f" ({about})" if about else ""
            yield "E100", f"missing required {noun} '{missing}'{where(path + (missing,))}{about}", path, bool(path)
        return
    if v == "type":
        types = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
        want = " or ".join(TYPE_NAMES.get(t, t) for t in types)
        if want == "a mapping" and _subject(path).startswith("node '"):
            want = "a mapping such as {type: conv, out: 16}"
        elif want == "a string" and schema.get("pattern") == IDENTIFIER:
            want = "a name" if "not" in schema else "a node name"
        yield "E102", f"{_subject(path)} must be {want}, got {_show(inst)}", path, False
        return
    if v == "not" and isinstance(inst, str) and inst in RESERVED_NAMES:
        yield "E105", f"{_field(path)}{where(path)} cannot be '{inst}': the name is reserved (it would clash with Python or nn.Module)", path, False
        return
    if v == "not" and isinstance(inst, str) and inst.startswith(RESERVED_PREFIX):
        yield "E105", f"{_field(path)}{where(path)} cannot be '{inst}': names may not start with '_' (nn.Module keeps its own state in such attributes)", path, False
        return
    if v in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        rel = {"minimum": "at least", "exclusiveMinimum": "greater than", "maximum": "at most", "exclusiveMaximum": "less than"}[v]
        yield "E103", f"{_field(path)}{where(path)} must be {rel} {err.validator_value}, got {_show(inst)}", path, False
        return
    if v in ("minItems", "maxItems"):
        if schema.get("minItems") == schema.get("maxItems"):
            about = f" ({schema['description']})" if "description" in schema else ""
            yield "E103", f"{_field(path)}{where(path)} must list exactly {schema['minItems']} values{about}, got {len(inst)}", path, False
        elif v == "minItems" and schema["minItems"] > 1:
            yield "E103", f"{_field(path)}{where(path)} must list at least {schema['minItems']} values, got {len(inst)}", path, False
        elif v == "maxItems":
            yield "E103", f"{_field(path)}{where(path)} may list at most {schema['maxItems']} values, got {len(inst)}", path, False
        else:
            yield "E103", f"{_field(path)}{where(path)} must not be empty", path, False
        return
    if v == "uniqueItems" and isinstance(inst, list):
        seen, twice = set(), None
        for item in inst:
            key = repr(item)
            if key in seen:
                twice = item
                break
            seen.add(key)
        yield "E103", f"{_field(path)}{where(path)} lists {_show(twice)} twice; each may appear once", path, False
        return
    if v == "minProperties":
        yield "E103", f"{_field(path)}{where(path)} must not be empty", path, False
        return
    if v in ("enum", "const"):
        options = err.validator_value if v == "enum" else [err.validator_value]
        listed = ", ".join(_show(o) for o in options)
        if path == ("archc",):
            listed += " (the spec format version this archc reads)"
        yield "E104", f"{_field(path)}{where(path)} must be {'one of ' if len(options) > 1 else ''}{listed}, got {_show(inst)}{did_you_mean(inst, options)}", path, False
        return
    lists = [sub for sub in schema[v] if sub.get("type") == "array" and sub.get("minItems") == sub.get("maxItems")] if v in ("oneOf", "anyOf") else []
    if isinstance(inst, list) and len(lists) > 1:
        # lists of several fixed lengths (pad: [height, width] or four sides): the one of its length, or say which lengths
        fits = [sub for sub in lists if sub["minItems"] == len(inst)]
        if not fits:
            counts = " or ".join(f"{sub['minItems']}" + (f" ({sub['description']})" if "description" in sub else "") for sub in lists)
            yield "E103", f"{_field(path)}{where(path)} must list {counts} values, got {len(inst)}", path, False
            return
        for sub in validator(fits[0]).iter_errors(inst):
            yield from _translate(sub, path, allowed_extra)
        return
    if v in ("oneOf", "anyOf") and any(_is_pair(sub) for sub in schema[v]):
        # an integer or a [height, width] pair: report against the branch the value was meant for
        branches = [sub for sub in schema[v] if _is_pair(sub) == isinstance(inst, list)]
        narrowed = branches[0] if len(branches) == 1 else {v: branches}
        for sub in validator(narrowed).iter_errors(inst):
            yield from _translate(sub, path, allowed_extra)
        return
    if v in ("oneOf", "anyOf"):
        expected = schema.get("x-expected")
        if expected is None:
            opts = [o for sub in schema[v] for o in sub.get("enum", [])]
            types = [_expected(sub) for sub in schema[v] if "type" in sub]
            expected = " or ".join([", ".join(_show(o) for o in opts)] * bool(opts) + [t for t in types if t])
        opts = [o for sub in schema[v] for o in sub.get("enum", [])]
        hint = did_you_mean(inst, opts)
        if isinstance(inst, list) and len(inst) == 1 and isinstance(inst[0], str) and "two or more" in expected:
            hint = f" of one; one output is written without brackets: {path[-1]}: {inst[0]}"
        yield "E104", f"{_field(path)}{where(path)} must be {expected}, got {_show(inst)}{hint}", path, False
        return
    if v == "pattern":
        if err.validator_value == EXPRESSION:
            yield "E102", f"{_field(path)}{where(path)} must be a $parameter, got {_show(inst)}", path, False
        else:
            yield "E105", f"{_field(path)}{where(path)} must be an ASCII identifier (ASCII letters, digits and _, not starting with a digit), got {_show(inst)}", path, False
        return
    yield "E199", f"{_field(path)}{where(path)}: {err.message}", path, False


def _is_pair(schema: dict) -> bool:
    """The [height, width] branch of a window parameter (`kernel: [1, 7]`)."""
    return schema.get("type") == "array" and schema.get("minItems") == schema.get("maxItems") == 2


def _expected_keys(allowed) -> str:
    return f"; expected one of: {', '.join(sorted(allowed))}" if allowed else "; this block takes no parameters"


# Top-level keys whose errors do not stop the analysis of the graph.
# (Shapes are only inferred for a spec without errors, so a bad `input` can wait too.)
_NONFATAL = ("name", "summary", "train", "input")


def validate_structure(doc: Document, diags: Diagnostics) -> tuple[bool, set, set] :
    """Check the document's shape (top-level keys, node and block structure).

    Returns (sound, broken nodes, broken blocks): the analysis goes on when every error is
    confined to single nodes or blocks (which are then skipped), so that one run reports
    as many real problems as it can.
    """
    errors = list(structural_validator().iter_errors(doc.data))
    paths = report_schema_errors(errors, doc, diags)
    broken = {"nodes": set(), "blocks": set()}
    sound = True
    for path in paths:
        if len(path) >= 2 and path[0] in broken:
            broken[path[0]].add(path[1])
        elif not (path and path[0] in _NONFATAL):
            sound = False
    return sound, broken["nodes"], broken["blocks"]

