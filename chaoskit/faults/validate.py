"""Every field of a recorded undo is judged before a command is built from it.

A fault's undo data comes back from places anyone with the right access can
write: the runner's ledger file, and the fault records in the cluster. The
sweep behind ``chaoskit cleanup``, ``abort`` and every session start reads
both, then reaches nodes as root. So before anything of a record is used,
:func:`check_undo` judges every field by its name (the same types the agent
uses, :mod:`chaoskit.agent.actions`): node names as DNS-1123, pids and inodes
as integers, a qdisc handle as hex, the comment as ``chaoskit:<id>``, paths
with no ``..``, a PID namespace as ``pid:[N]``. Any other text field may
carry no shell metacharacter, quote, or control character. A record that
fails is refused with the field and the reason, and nothing of it runs.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from chaoskit.agent import actions
from chaoskit.agent.actions import Refused

PID_NS = re.compile(r"^pid:\[[0-9]{1,20}\]$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
PLAIN_TEXT = re.compile(r"^[^\x00-\x1f\x7f$`;&|<>(){}'\"\\]*$")
"""Text with no shell metacharacter, quote, backslash or control character (a newline among them)."""
MAX_TEXT = 512
MAX_ITEMS = 1000

__all__ = ["Refused", "check_undo"]


def _number(value: Any, field: str, low: float = 0, high: float = 1e9) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise Refused(f"{field}: {value!r} is not a number in {low:g}-{high:g}")
    return float(value)


def _netns(value: Any, field: str) -> None:
    if not isinstance(value, list) or not 2 <= len(value) <= 4:
        raise Refused(f"{field}: {value!r} is not [node, pid, inode, pod]")
    actions.check_node(value[0], f"{field}[0]")
    actions.check_pid(value[1], f"{field}[1]")
    if len(value) > 2:
        actions._int(value[2], f"{field}[2]", 0, actions.INODE_MAX)
    if len(value) > 3:
        _text(value[3], f"{field}[3]")


def _text(value: Any, field: str) -> None:
    if not isinstance(value, str) or len(value) > MAX_TEXT or not PLAIN_TEXT.match(value):
        raise Refused(f"{field}: {value!r:.80} may hold no shell metacharacter, quote or control character")


def _ip(value: Any, field: str) -> None:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        raise Refused(f"{field}: {value!r:.80} is not an IP address") from None


FIELDS: dict[str, Any] = {
    "node": actions.check_node,
    "comment": actions.check_comment,
    "handle": actions.check_handle,
    "file": lambda v, f: actions._name(v, f, actions.FILL_FILE, 80),
    "path": actions._path,
    "uid": lambda v, f: actions._name(v, f, actions.UID, 36),
    "pid": actions.check_pid,
    "netns": lambda v, f: actions._int(v, f, 0, actions.INODE_MAX),
    "bytes": lambda v, f: actions._int(v, f, 0, 2**62),
    "pid_ns": lambda v, f: actions._name(v, f, PID_NS, 30),
    "ip": _ip,
    "table": lambda v, f: actions._choice(v, f, actions.TABLES),
    "mark": actions._name,
    "fault_id": actions._name,
    "zone": lambda v, f: actions._name(v, f, LABEL_VALUE, 63),
    "timeout": lambda v, f: _number(v, f, 0, 86400),
    "mode": lambda v, f: actions._name(v, f, actions.DNS_LABEL, 32),
}


def check_undo(undo: Any, where: str = "undo") -> None:
    """Raise Refused naming the first field of ``undo`` that does not validate."""
    if not isinstance(undo, dict):
        raise Refused(f"{where}: {undo!r:.80} is not a mapping")
    for key, value in undo.items():
        field = f"{where}.{key}"
        if not isinstance(key, str) or not re.match(r"^[a-z_]{1,32}$", key):
            raise Refused(f"{where}: {key!r:.40} is not a field name")
        if key == "namespaces":
            if not isinstance(value, list) or len(value) > MAX_ITEMS:
                raise Refused(f"{field}: not a list of namespaces")
            for i, item in enumerate(value):
                _netns(item, f"{field}[{i}]")
        elif key in FIELDS:
            FIELDS[key](value, field)
        elif isinstance(value, dict):
            check_undo(value, field)
        elif isinstance(value, list):
            if len(value) > MAX_ITEMS:
                raise Refused(f"{field}: more than {MAX_ITEMS} items")
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    check_undo(item, f"{field}[{i}]")
                elif isinstance(item, str):
                    _text(item, f"{field}[{i}]")
                elif isinstance(item, bool) or not isinstance(item, int | float):
                    raise Refused(f"{field}[{i}]: {item!r:.80} is not a text, number or mapping")
        elif isinstance(value, str):
            _text(value, field)
        elif value is not None and not isinstance(value, bool | int | float):
            raise Refused(f"{field}: {value!r:.80} is not a text, number or mapping")
