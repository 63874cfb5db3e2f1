"""The loader's first pass: a file's YAML turned into plain data, with the line each field is written on,
refusing what PyYAML would let pass silently (a key written twice, a key that is not text, a number that is
not finite, an alias bomb); and the problems every pass finds, kept per field."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from chaoskit.gameday.model import MAX_NODES, PLAIN_KEY, SYNTAX, Loc, Problem
from chaoskit.gameday.words import show

# ---- the file as plain data, with its lines -------------------------------------------------------------


@dataclass(frozen=True)
class _Found:
    loc: Loc
    problem: str
    fix: str
    line: int | None = None
    """The line, when it is not the one the path is written on."""
    scope: Loc | None = None
    """Other problems at or under this path are left out: they follow from this one."""
    missing: bool = False
    """A key that is not there (left out when a misspelt key was taken for it)."""
    meant: Loc | None = None
    """For a key not known here: the known key it is likely a misspelling of."""


class _TooLarge(Exception):
    pass


class Document:
    """One file being checked: its lines by path, and what was found wrong."""

    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.text = text
        self.base = Path(source).parent
        self.lines: dict[Loc, int] = {}
        self.found: list[_Found] = []
        self._nodes = 0

    def add(
        self,
        loc: Loc,
        problem: str,
        fix: str,
        *,
        line: int | None = None,
        scope: Loc | None = None,
        missing: bool = False,
        meant: Loc | None = None,
    ) -> None:
        self.found.append(_Found(loc, problem, fix, line, scope, missing, meant))

    def line(self, loc: Loc) -> int:
        while loc not in self.lines and loc:
            loc = loc[:-1]
        return self.lines.get(loc, 1)

    def clean(self, loc: Loc) -> bool:
        """Whether nothing was found at, under or (as a scope) above ``loc``."""
        for f in self.found:
            if f.loc[: len(loc)] == loc or (f.scope is not None and loc[: len(f.scope)] == f.scope):
                return False
        return True

    def problems(self) -> list[Problem]:
        kept: dict[str, Problem] = {}
        scopes = [f for f in self.found if f.scope is not None]
        meant = {f.meant for f in self.found if f.meant is not None}
        for f in self.found:
            if any(f is not s and s.scope is not None and f.loc[: len(s.scope)] == s.scope for s in scopes):
                continue
            if f.missing and f.loc in meant:  # "lood: did you mean load?" says it already
                continue
            name = field_name(f.loc)
            if name not in kept:
                kept[name] = Problem(self.source, f.line or self.line(f.loc), name, f.problem, f.fix)
        return sorted(kept.values(), key=lambda p: p.line)

    def plain(self) -> object | None:
        """The file's data (None when it has none to check), every path's line recorded."""
        loader = yaml.SafeLoader(self.text)
        try:
            node = loader.get_single_node()
            if node is None:
                self.add((), "the file is empty", "write at least namespace:, load:, faults: and objectives:", line=1)
                return None
            self.lines[()] = node.start_mark.line + 1
            return self._value(loader, node, (), frozenset())
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            problem = " ".join(p for p in (exc.context, exc.problem) if p) or "not valid YAML"
            fix = "fix the YAML there (indentation, a missing ':' or '-', an unclosed quote or bracket)"
            if "single document" in problem:
                fix = "write one experiment per file: drop the '---' and what follows it"
            self.add(SYNTAX, problem, fix, line=mark.line + 1 if mark else 1)
        except yaml.YAMLError as exc:
            self.add(SYNTAX, f"not valid YAML ({exc})", "fix the YAML", line=1)
        except _TooLarge:
            self.add((), f"expands to more than {MAX_NODES} values", "write it out without nested aliases", line=1)
        finally:
            loader.dispose()
        return None

    def _value(self, loader: yaml.SafeLoader, node: yaml.Node, loc: Loc, holding: frozenset[int]) -> object:
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _TooLarge
        if id(node) in holding:
            self.add(loc, "refers to itself (an alias of the mapping or list that holds it)", "write the value out")
            return None
        inside = holding | {id(node)}
        if isinstance(node, yaml.MappingNode):
            return self._mapping(loader, node, loc, inside)
        if isinstance(node, yaml.SequenceNode):
            items: list[object] = []
            for index, item in enumerate(node.value):
                self.lines[(*loc, index)] = item.start_mark.line + 1
                items.append(self._value(loader, item, (*loc, index), inside))
            return items
        value = loader.construct_object(node)
        if isinstance(value, float) and not math.isfinite(value):
            self.add(loc, f"{show(value)} is not a finite number", "write a number such as 10")
            return None
        return value

    def _mapping(self, loader: yaml.SafeLoader, node: yaml.MappingNode, loc: Loc, inside: frozenset[int]) -> object:
        first: dict[object, int] = {}
        for key_node, _ in node.value:  # the keys as written, before merge keys (<<) bring in others
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = loader.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if isinstance(key, str) and key in first:
                self.add((*loc, key), f"is written twice (first on line {first[key]})", "keep one", line=line)
            first.setdefault(key, line)
        loader.flatten_mapping(node)
        out: dict[str, object] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                self.add(loc, "has a key that is a mapping or a list", "write each key as plain text", line=line)
                continue
            key = loader.construct_object(key_node)
            if not isinstance(key, str):
                text = show(key)
                self.add((*loc, str(key)), f"the key {text} is not text", f'write it in quotes: "{key}":', line=line)
                continue
            self.lines[(*loc, key)] = line
            out[key] = self._value(loader, value_node, (*loc, key), inside)
        return out


def field_name(loc: Loc) -> str:
    """A path as messages write it: ``faults[0].duration``, ``deploy.images["my.image"]``."""
    out = ""
    if loc == SYNTAX:
        return str(loc[0])
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out or "(top level)"
