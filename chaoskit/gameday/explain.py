"""The loader's second pass: the JSON Schema (draft 2020-12) editors use too, and each jsonschema error
said as one problem with its fix, the fix built from the schema's own ``examples``."""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Mapping
from importlib import resources
from typing import Any, cast

from jsonschema import Draft202012Validator, ValidationError

from chaoskit.gameday.document import Document, field_name
from chaoskit.gameday.model import FAULT_KEYS, FAULT_KINDS, SCHEMA_FILE, Loc, fault_options
from chaoskit.gameday.words import either, flow, possessive, read_duration, show, what_it_is, with_article

# ---- the schema pass ---------------------------------------------------------------------------------


@functools.cache
def _schema_text() -> str:
    return resources.files("chaoskit.gameday").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")


@functools.cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(schema())


def _root() -> Mapping[str, Any]:
    """The schema the validator holds (the one its errors' subschemas are parts of)."""
    return cast(Mapping[str, Any], _validator().schema)


def schema_pass(doc: Document, data: object) -> None:
    for error in _validator().iter_errors(data):
        _Explain(doc, data, error).add()


class _Explain:
    """One jsonschema error, said as problems with their fixes."""

    def __init__(self, doc: Document, data: object, error: ValidationError) -> None:
        self.doc = doc
        self.data = data
        self.error = error
        self.loc: Loc = tuple(error.absolute_path)
        self.schema: Mapping[str, Any] = error.schema if isinstance(error.schema, Mapping) else {}
        self.instance: object = error.instance
        self.value: Any = error.validator_value
        """What the failed keyword asked for: the required keys, the type, the bound..."""

    def add(self) -> None:
        kind = self.error.validator
        handler = {
            "required": self._required,
            "additionalProperties": self._unknown_keys,
            "type": self._type,
            "enum": self._choice,
            "const": self._choice,
            "anyOf": self._alternatives,
            "oneOf": self._alternatives,
            "minimum": self._range,
            "exclusiveMinimum": self._range,
            "maximum": self._range,
            "exclusiveMaximum": self._range,
            "minItems": self._empty,
            "minLength": self._empty,
            "pattern": self._pattern,
        }.get(str(kind))
        if handler is not None:
            handler()
        else:
            self.doc.add(self.loc, self.error.message, f"write it as the schema describes it{self._such_as()}")

    def _such_as(self) -> str:
        """ " such as EXAMPLE" from the schema: the failed subschema's, the field's, or the list's first item's."""
        example = _example(self.schema)
        if example is None:
            example = _example(_documented(self.loc, self.data))
        if example is None and self.loc and isinstance(self.loc[-1], int):
            in_list = _example(_documented(self.loc[:-1], self.data))
            example = in_list[0] if isinstance(in_list, list) and in_list else None
        return f" such as {flow(example)}" if example is not None else ""

    def _required(self) -> None:
        if not isinstance(self.instance, dict):
            return
        properties = self.schema.get("properties", {})
        what = _what(self.loc, self.data)
        for key in self.value:
            if key in self.instance:
                continue
            example = _example(_resolve(properties.get(key, {})))
            fix = f"add {key}: {flow(example)}" if example is not None else f"add {key}:"
            problem = "is missing" if not self.loc else f"is missing: {what} needs it"
            self.doc.add((*self.loc, key), problem, fix, line=self.doc.line(self.loc), missing=True)

    def _unknown_keys(self) -> None:
        if not isinstance(self.instance, dict):
            return
        allowed = list(self.schema.get("properties", {}))
        what = _what(self.loc, self.data)
        fault_kind = _fault_kind(self.loc, self.data)
        if fault_kind is not None:
            allowed = [*FAULT_KEYS, *fault_options(fault_kind).parameters]
        patterns = list(self.schema.get("patternProperties", {}))
        for key in self.instance:
            if key in allowed or any(re.search(p, key) for p in patterns):
                continue
            if self.loc == ("cluster",) and key in ("context", "name"):
                fix = (
                    "write provider: existing to use a kubeconfig context, or drop context"
                    if key == "context"
                    else "an existing cluster is named by its context: drop name, or write context:"
                )
                self.doc.add((*self.loc, key), f"is not for {what}", fix)
                continue
            if key == "window" and "recovery" in self.instance:
                fix = "drop it: recovery is timed per fault (from each fault's injection until whole again)"
                self.doc.add((*self.loc, key), "does not apply to a recovery objective", fix)
                continue
            if fault_kind is not None:
                problem = f"{fault_kind} takes no option {key} (Chaos.{FAULT_KINDS[fault_kind]} has no such argument)"
                options = [k for k in allowed if k not in FAULT_KEYS]
                listed = f"{fault_kind} takes {', '.join(options)} (besides kind, at and duration)"
            else:
                problem = "is not a key of the file" if not self.loc else f"is not a key of {what}"
                listed = f"{possessive(what)} keys are {', '.join(allowed)}"
                if patterns == ["^x-"]:
                    listed += ", and any starting with x- (ignored: for YAML anchors)"
                if all(k in self.instance for k in allowed):
                    listed = f"drop it: {what} takes only {either(allowed)}"
            free = [k for k in allowed if k not in self.instance]
            near = difflib.get_close_matches(key, free, n=1, cutoff=0.6)
            fix = f"did you mean {near[0]}? {listed}" if near else listed
            self.doc.add((*self.loc, key), problem, fix, meant=(*self.loc, near[0]) if near else None)

    def _type(self) -> None:
        expected = self.value
        names = [expected] if isinstance(expected, str) else list(expected)
        wanted = " or ".join(_TYPE_NAMES.get(n, n) for n in names)
        self.doc.add(self.loc, f"{what_it_is(self.instance)}, not {wanted}", f"write {wanted}{self._such_as()}")

    def _choice(self) -> None:
        choices = [self.value] if self.error.validator == "const" else self.value
        words = [str(c) for c in choices]
        near = (
            difflib.get_close_matches(self.instance, words, n=1, cutoff=0.6) if isinstance(self.instance, str) else []
        )
        guess = f"did you mean {near[0]}? " if near else ""
        if len(self.loc) == 3 and self.loc[0] == "faults" and self.loc[2] == "kind":
            problem = f"unknown fault kind {show(self.instance)}"
            fix = f"{guess}the known kinds are {', '.join(FAULT_KINDS)}"
            self.doc.add(self.loc, problem, fix, scope=self.loc[:2])  # nothing else about the fault can be checked
            return
        self.doc.add(self.loc, f"{show(self.instance)} is not {either(words)}", f"{guess}write {either(words)}")

    def _alternatives(self) -> None:
        last = self.loc[-1] if self.loc else None
        in_fault = len(self.loc) == 3 and self.loc[0] == "faults"
        if in_fault and last in ("at", "duration"):
            _, problem, fix = read_duration(self.instance, allow_zero=last == "at", allow_until=last == "duration")
            self.doc.add(self.loc, problem, fix)
            return
        if self.loc == ("namespace",):
            if not isinstance(self.instance, str):
                self.doc.add(self.loc, f"{what_it_is(self.instance)}, not a string", "write a namespace such as shop")
            else:
                self.doc.add(
                    self.loc,
                    f"{show(self.instance)} is not a namespace name",
                    "write lower-case letters, digits and '-' (at most 63), such as shop, or auto for a fresh "
                    "namespace of the run's own",
                )
            return
        branches = self.value
        keys = [
            b["required"][0]
            for b in branches
            if isinstance(b, dict) and set(b) == {"required"} and len(b["required"]) == 1
        ]
        if len(keys) != len(branches):
            self.doc.add(
                self.loc,
                f"{show(self.instance)} is not valid here",
                f"write it as the schema describes it{self._such_as()}",
            )
            return
        if not isinstance(self.instance, dict):
            return  # branches of required keys pass anything but a mapping: its type error says it
        present = [k for k in keys if k in self.instance]
        if self.error.validator == "anyOf":  # bounds: at least one of them
            documented = _documented(self.loc, self.data).get("properties", {})
            examples = [f"{k}: {flow(_example(_resolve(documented.get(k, {}))))}" for k in keys]
            self.doc.add(self.loc, f"needs {either(keys)}", f"add {either(examples)}")
            return
        noun = "a stop condition" if self.loc[:1] == ("stop_conditions",) else "an objective"
        if not present:
            near = [m for k in self.instance for m in difflib.get_close_matches(str(k), keys, n=1, cutoff=0.6)]
            fix = f"write one of {', '.join(keys)}"
            if near:
                fix = f"did you mean {near[0]}? {fix}"
            self.doc.add(self.loc, f"is not {noun}: it names none of {', '.join(keys)}", fix, scope=self.loc)
        else:
            self.doc.add(
                self.loc,
                f"names {' and '.join(present)} at once",
                f"write each as {noun} of its own (one per list item)",
                scope=self.loc,
            )

    def _range(self) -> None:
        bound = self.value
        words = {
            "minimum": f"is less than {bound:g}",
            "exclusiveMinimum": "is not positive" if bound == 0 else f"is not above {bound:g}",
            "maximum": f"is more than {bound:g}",
            "exclusiveMaximum": f"is not below {bound:g}",
        }[str(self.error.validator)]
        self.doc.add(self.loc, f"{show(self.instance)} {words}", f"write {_range_text(self.schema)}{self._such_as()}")

    def _empty(self) -> None:
        what = "an empty list" if isinstance(self.instance, list) else "empty"
        self.doc.add(self.loc, f"is {what}", f"write at least one{self._such_as()}")

    def _pattern(self) -> None:
        loc = self.loc
        if "propertyNames" in self.error.relative_schema_path:
            loc = (*loc, str(self.instance))
            self.doc.add(
                loc,
                f"{show(self.instance)} cannot name an image",
                "name it with letters, digits, '_' and '-', as ${image.NAME} writes it",
            )
            return
        pattern = str(self.value)
        problem, fix = _PATTERN_WORDS.get(pattern, (f"does not match {pattern}", "write it as the schema describes it"))
        such_as = self._such_as()
        self.doc.add(loc, f"{show(self.instance)} {problem}", fix + such_as if such_as else fix.rstrip(","))


_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "number": "a number",
    "integer": "a whole number",
    "boolean": "true or false",
    "null": "nothing",
}
_DNS_LABEL = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DNS_NAME = "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
_PATTERN_WORDS = {
    _DNS_LABEL: (
        "is not a Kubernetes name",
        "write lower-case letters, digits and '-', starting and ending with a letter or digit,",
    ),
    _DNS_NAME: (
        "is not a Kubernetes name",
        "write lower-case letters, digits, '-' and '.', starting and ending with a letter or digit,",
    ),
    "\\S": ("is blank", "write it out,"),
    "^/\\S*$": ("is not a URL path", "start it with / and leave out spaces,"),
    "^[A-Za-z_][A-Za-z0-9_]*$": ("is not a Python class name", "write the class's name,"),
    "^(Deployment|StatefulSet|DaemonSet|ReplicaSet)/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$": (
        "is not Kind/name",
        "write the kind (Deployment, StatefulSet, DaemonSet or ReplicaSet), '/' and the name,",
    ),
}
"""What a value that does not match a pattern of the schema is, and the start of its fix (ended by an example)."""


def _resolve(schema: object) -> Mapping[str, Any]:
    """A subschema with its local ``$ref`` followed (its own title, description and examples kept first)."""
    if not isinstance(schema, Mapping):
        return {}
    if "$ref" not in schema:
        return schema
    target: Any = _root()
    for part in str(schema["$ref"]).removeprefix("#/").split("/"):
        target = target[part]
    return {**_resolve(target), **{k: v for k, v in schema.items() if k != "$ref"}}


def _example(schema: Mapping[str, Any]) -> object | None:
    examples = _resolve(schema).get("examples")
    return examples[0] if examples else None


def _documented(loc: Loc, data: object) -> Mapping[str, Any]:
    """The schema that documents the value at ``loc``: titles, descriptions and examples (not the if/then parts
    that only constrain it)."""
    schema = _resolve(_root())
    for depth, part in enumerate(loc):
        if isinstance(part, int):
            schema = _resolve(schema.get("items", {}))
            fault = _fault_kind(loc[: depth + 1], data)
            if fault is not None:
                schema = _resolve(_root()["$defs"][f"fault-{fault}"])
        else:
            schema = _resolve(schema.get("properties", {}).get(part, {}))
    return schema


def _range_text(schema: Mapping[str, Any]) -> str:
    noun = "a whole number" if schema.get("type") == "integer" else "a number"
    low, low_open = (
        (schema["exclusiveMinimum"], True) if "exclusiveMinimum" in schema else (schema.get("minimum"), False)
    )
    high, high_open = (
        (schema["exclusiveMaximum"], True) if "exclusiveMaximum" in schema else (schema.get("maximum"), False)
    )
    if low is not None and high is not None:
        return f"{noun} in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        if low == 0:
            return f"a positive {noun.removeprefix('a ')}" if low_open else f"{noun} of 0 or more"
        return f"{noun} {'above' if low_open else 'of at least'} {low:g}"
    if high is not None:
        return f"{noun} {'below' if high_open else 'of at most'} {high:g}"
    return noun


def _what(loc: Loc, data: object) -> str:
    """The mapping at ``loc``, in words: "a pod-kill fault", "an availability objective"."""
    if not loc:
        return "the file"
    node = value_at(data, loc)
    fault = _fault_kind(loc, data)
    if fault is not None:
        return f"a {fault} fault"
    if len(loc) == 2 and loc[0] == "faults":
        return "a fault"
    if loc == ("cluster",) and isinstance(node, dict):
        return f"{with_article(str(node.get('provider', 'kind')))} cluster"
    if isinstance(node, dict) and len(loc) >= 2 and isinstance(loc[-1], int):
        if loc[-2] == "objectives":
            key = next((k for k in node if k != "window"), None)
            return f"{with_article(key)} objective" if key else "an objective"
        if loc[-2] == "stop_conditions":
            key = next(iter(node), None)
            return f"{with_article(key)} stop condition" if key else "a stop condition"
        if loc[-2] == "workloads":
            return "a workload"
    if len(loc) >= 3 and loc[-3] == "objectives" and isinstance(loc[-1], str):
        return f"{with_article(loc[-1])} objective"
    return field_name(loc)


def _fault_kind(loc: Loc, data: object) -> str | None:
    if len(loc) == 2 and loc[0] == "faults":
        node = value_at(data, loc)
        if isinstance(node, dict) and node.get("kind") in FAULT_KINDS:
            return str(node["kind"])
    return None


def value_at(data: object, loc: Loc) -> object:
    for part in loc:
        if isinstance(data, dict) and isinstance(part, str):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return None
    return data


def schema() -> dict[str, Any]:
    """The experiment file's JSON Schema (draft 2020-12), a fresh copy of the package's."""
    return cast(dict[str, Any], json.loads(_schema_text()))
