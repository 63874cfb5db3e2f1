"""The safety rules every fault is held to before it touches the cluster: protected namespaces, the
blast-radius cap, the allowed clusters, and well-formed label selectors. :class:`Safety` is one run's
settings of them; each front end (pytest, the command line, Python) names its own options in its refusals.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from dataclasses import replace as replace_spec

from chaoskit.cluster.base import Cluster
from chaoskit.errors import (
    SafetyError,
    SpecError,
)

PROTECTED_NAMESPACES = (
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "local-path-storage",
    "chaoskit-monitoring",
    "chaoskit-system",
)


_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_REQUIREMENT = re.compile(
    r"^\s*(?:(?P<not>!)\s*(?P<absent>[^\s=!(),]+)"
    r"|(?P<key>[^\s=!(),]+)\s*(?:(?P<op>==|=|!=)\s*(?P<value>[^\s=!(),]*)"
    r"|\s+(?P<set>in|notin)\s*\((?P<values>[^()]*)\))?)\s*$"
)


def check_selector(selector: str, what: str = "selector") -> None:
    """Refuse a label selector the API server would refuse, before anything is asked of the cluster (its
    grammar: ``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a)``, ``k``, ``!k``, joined by commas),
    and an empty one: it would mean every pod, never what a user wants to break."""
    if not selector.strip():
        raise SpecError(f"an empty {what} would match every pod: give a label selector such as app=web")
    if len(selector) > 4096:
        raise SpecError(f"the {what} is {len(selector)} characters long: a label selector is far shorter")
    for part in _split_requirements(selector, what):
        match = _REQUIREMENT.match(part)
        if match is None:
            raise SpecError(
                f"the {what} {selector!r} is not a label selector: cannot read {part.strip()!r}; write key=value, "
                "key!=value, key in (a,b), key notin (a,b), key or !key, joined by commas"
            )
        key = match.group("absent") or match.group("key")
        if not _LABEL_KEY.match(key) or len(key.rpartition("/")[2]) > 63:
            raise SpecError(f"the {what} {selector!r}: {key!r} is not a label key (such as app or example.com/tier)")
        values = [match.group("value")] if match.group("op") else []
        if match.group("set"):
            values = [v.strip() for v in match.group("values").split(",")]
            if not any(values):
                raise SpecError(f"the {what} {selector!r}: {key} {match.group('set')} () lists no value")
        for value in values:
            if value is not None and (len(value) > 63 or not _LABEL_VALUE.match(value)):
                raise SpecError(f"the {what} {selector!r}: {value!r} is not a label value")


def _split_requirements(selector: str, what: str) -> list[str]:
    """The selector's comma-separated requirements (commas inside parentheses belong to a set)."""
    parts, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
            if depth > 1:
                raise SpecError(f"the {what} {selector!r} is not a label selector: nested parentheses")
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise SpecError(f"the {what} {selector!r} is not a label selector: a ')' without its '('")
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if depth:
        raise SpecError(f"the {what} {selector!r} is not a label selector: a '(' is never closed")
    return [*parts, current]


FRONT_ENDS = ("pytest", "cli", "python")
_PYTHON_OPTIONS = {
    "allow-context": ("allowed_contexts", "Safety({field}=({value!r},))"),
    "allow-namespace": ("allowed_namespaces", "Safety({field}=({value!r},))"),
    "allow-control-plane": ("allow_control_plane", "Safety({field}=True)"),
    "max-share": ("max_share", "Safety({field}=...)"),
    "injector": ("injector", "open_session(..., {field}={value!r})"),
}
"""How a script says each option the refusals name: the Safety field (or open_session argument) and its shape."""


@dataclass(frozen=True)
class Safety:
    """Rules every fault is checked against before it acts."""

    allowed_contexts: tuple[str, ...] = ()
    """Non-kind contexts that faults may touch (kind clusters are always allowed)."""
    allowed_namespaces: tuple[str, ...] = ()
    """Protected namespaces that faults may touch nonetheless."""
    max_share: float = 0.5
    """The largest share of the matching pods or nodes one fault may touch."""
    allow_control_plane: bool = False
    """Whether node faults may hit a control-plane node."""
    dry_run: bool = False
    """Report what would happen and change nothing."""
    preflight: bool = False
    """A check before a real run (with ``dry_run``): plan each fault to find a bad selector or a refusal
    early, and say nothing of the targets, which the real run chooses again."""
    share_nodes: bool = False
    """Whether faults that stay inside their pods may act on a node while another run's fault does
    (:mod:`chaoskit.state.locks`); node-wide faults hold their nodes alone whatever this says."""
    front_end: str = "python"
    """Who set these rules: ``pytest`` (the plugin), ``cli`` (``chaoskit run``, ``inject``) or ``python`` (a
    script). A refusal names the option of that front end (:meth:`option`)."""

    def __post_init__(self) -> None:
        if not 0 < self.max_share <= 1:
            raise SafetyError(f"max_share must be in (0, 1], not {self.max_share}")
        if self.front_end not in FRONT_ENDS:
            raise SafetyError(f"front_end must be one of {', '.join(FRONT_ENDS)}, not {self.front_end!r}")

    def option(self, name: str, value: object = None) -> str:
        """How a user of this front end says option ``name`` (``allow-namespace``, ``injector``...) with ``value``:
        ``--chaos-allow-namespace=kube-system`` for pytest, ``--allow-namespace kube-system`` for the command
        line, ``Safety(allowed_namespaces=("kube-system",))`` in Python."""
        if self.front_end == "pytest":
            return f"--chaos-{name}" + ("" if value is None else f"={value}")
        if self.front_end == "cli":
            return f"--{name}" + ("" if value is None else f" {value}")
        field, shape = _PYTHON_OPTIONS[name]
        return shape.format(field=field, value=value)

    def check_cluster(self, cluster: Cluster) -> None:
        if cluster.is_kind or cluster.context in self.allowed_contexts:
            return
        raise SafetyError(
            f"refusing to inject faults into context {cluster.context!r}: it is not a kind cluster; "
            f"allow it explicitly with {self.option('allow-context', cluster.context)}"
        )

    def check_namespace(self, namespace: str) -> None:
        if namespace in PROTECTED_NAMESPACES and namespace not in self.allowed_namespaces:
            raise SafetyError(
                f"namespace {namespace!r} is protected: faults there are refused unless it is allowed "
                f"explicitly with {self.option('allow-namespace', namespace)}"
            )

    def check_share(self, chosen: int, total: int, what: str, active: dict[str, list[str]] | None = None) -> None:
        """Refuse a fault that would touch more than the cap of ``total``: its own ``chosen``, plus those of the
        ``total`` already hit by other active faults (``active``: fault id -> what it holds of them), this
        run's and other runs' alike, counted as if the new fault chose none of them (at most ``total``: a
        fault on a pod already hit takes no more down)."""
        held = sorted({item for items in (active or {}).values() for item in items})
        touched = min(total, chosen + len(held)) if total else chosen
        if total and touched / total > self.max_share + 1e-9:
            already = (
                f" ({len(held)} of them already hit by active fault(s) {', '.join(sorted(active or {}))}: "
                f"{', '.join(held)}; this one adds {chosen})"
                if held
                else ""
            )
            raise SafetyError(
                f"the fault would touch {touched} of {total} {what} ({touched / total:.0%}){already}, over the "
                f"blast-radius cap of {self.max_share:.0%}; lower the count, or raise the cap for this "
                f"fault with max_share={touched / total:.2g} (or {self.option('max-share', 'SHARE')} for the run)"
            )

    def with_max_share(self, max_share: float | None) -> Safety:
        """These rules with the cap raised (or lowered) for one fault; ``None`` keeps the session's."""
        if max_share is None:
            return self
        return replace_spec(self, max_share=max_share)
