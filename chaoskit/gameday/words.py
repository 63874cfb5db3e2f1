"""How the loader says things: values, types and lists as a message writes them, durations read from a
file, and a SpecError's message cut into its problem and its fix."""

from __future__ import annotations

import difflib
import json
import math
import re
import typing
from collections.abc import Mapping, Sequence

import yaml

from chaoskit.gameday.model import DURATION_PATTERN, DURATION_UNITS, IMPERATIVE, UNTIL_RECOVERED


def with_article(word: str | None) -> str:
    if not word:
        return "a"
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def possessive(what: str) -> str:
    return "the file's" if what == "the file" else f"{what}'s"


def either(words: Sequence[str]) -> str:
    words = list(words)
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def show(value: object) -> str:
    """A value as the message quotes it: strings in double quotes, YAML's words for the rest."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return str(value)


def what_it_is(value: object) -> str:
    """What a value is: '"one" is a string', "a list", "nothing"."""
    if value is None:
        return "is empty"
    if isinstance(value, list | dict):
        return f"is {show(value)}"
    if isinstance(value, bool):
        kind = "true or false"
    elif isinstance(value, str):
        kind = "a string"
    elif isinstance(value, int):
        kind = "a whole number"
    elif isinstance(value, float):
        kind = "a number"
    else:
        kind = type(value).__name__
    return f"{show(value)} is {kind}"


def flow(value: object) -> str:
    """A value as YAML would write it on one line, for a fix."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    if isinstance(value, str):
        plain = re.fullmatch(r"[A-Za-z0-9_./=-][A-Za-z0-9_./=:-]*", value) and yaml.safe_load(value) == value
        return value if plain else json.dumps(value)
    return show(value)


# ---- durations -----------------------------------------------------------------------------------------


def read_duration(
    value: object, *, allow_zero: bool = False, allow_until: bool = False
) -> tuple[float | None, str, str]:
    """(seconds, "", "") for a good duration, else (None, problem, fix)."""
    if allow_zero:
        fix = "write 0 or a duration such as 5s, 1m or 1m30s"
    else:
        fix = "write a positive duration such as 30s, 1m30s or 500ms"
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and re.fullmatch(f"(?:{DURATION_PATTERN.pattern})+", value):
        seconds = sum(float(n) * DURATION_UNITS[unit] for n, unit in DURATION_PATTERN.findall(value))
    if seconds is None or not math.isfinite(seconds):
        if allow_until and isinstance(value, str):
            near = difflib.get_close_matches(value, [UNTIL_RECOVERED], n=1, cutoff=0.6)
            if near:
                return None, f"{show(value)} is not a duration", f"did you mean {UNTIL_RECOVERED}?"
        return None, f"{show(value)} is not a duration", fix
    if seconds < 0 or (seconds == 0 and not allow_zero):
        return None, f"{show(value)} {'is negative' if allow_zero else 'is not a positive duration'}", fix
    return seconds, "", ""


def split_message(message: str, owner: str) -> tuple[str, str]:
    """A SpecError's message as (problem, fix)."""
    if message.startswith(IMPERATIVE):
        return f"refused by {owner}", message
    for sep in ("; ", ": "):
        if sep in message:
            problem, fix = message.split(sep, 1)
            return problem, fix
    return message, f"see {owner} for what it takes"


def culprit(message: str, given: Mapping[str, object]) -> str | None:
    """The key a message names first, by its name or by its (text) value, if any."""
    hits = []
    for key, value in given.items():
        match = re.search(rf"(?<![\w.]){re.escape(key)}(?!\w)", message)
        if match is None and isinstance(value, str) and len(value) > 2:
            match = re.search(re.escape(repr(value)), message)
        if match:
            hits.append((match.start(), key))
    return min(hits)[1] if hits else None


def coerce(value: object, hint: object) -> object:
    """A file's value as the argument's type wants it: a list as a tuple, 2.0 as 2 for an int."""
    if isinstance(value, list):
        return tuple(value)
    args = typing.get_args(hint) or (hint,)
    if isinstance(value, float) and value.is_integer() and int in args and float not in args:
        return int(value)
    return value
