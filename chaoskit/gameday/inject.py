"""``chaoskit inject KIND``: one fault by hand, proven, held with a countdown, undone at the end or on Ctrl-C.

Every option after the kind is the fault's own keyword argument, spelled with
dashes (``--grace-seconds 0``, ``--peer-selector app=db``): the same names as
the ``chaos.*`` methods and the experiment files, read from the method's
signature, so the command line can never drift from the API.
"""

from __future__ import annotations

import argparse
import sys
import time
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chaoskit.cluster import ClusterSpec
from chaoskit.errors import UsageError
from chaoskit.gameday.command import injector_options, safety_from, safety_options
from chaoskit.gameday.spec import FAULT_KINDS, check_fault, fault_options, parse_duration
from chaoskit.observe import RecoveryWatch
from chaoskit.session import open_session

INJECT_HELP = """\
Every option after KIND is the fault's own (as the chaos.* method of the same
name takes it, dashes for underscores); --help-kind KIND lists them.

examples:
  chaoskit inject pod-kill --namespace shop --selector app=web --grace-seconds 0
  chaoskit inject partition --namespace shop --selector app=shop --peer-selector app=redis --duration 60s
  chaoskit inject node-failure --node chaoskit-worker --duration 2m --watch shop/web
  chaoskit inject packet-loss --namespace shop --selector app=web --percent 30 --count 1 --duration 30s
"""


def add_parser(commands: Any) -> None:
    inject = commands.add_parser(
        "inject",
        help="inject one fault by hand, proven, held for --duration, undone at the end or on Ctrl-C",
        description="Inject one fault, prove it, hold it with a countdown, undo it and prove the undo.",
        epilog=INJECT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # the fault's own options come after: --c must not be taken for --context
    )
    inject.add_argument("kind", metavar="KIND", help=f"one of {', '.join(FAULT_KINDS)}")
    inject.add_argument("--duration", default="0s", help="how long to hold it (30s, 2m; default: undone once proven)")
    inject.add_argument("--watch", metavar="[NS/]NAME", help="show this Deployment's ready replicas while it is held")
    inject.add_argument("--name", default="chaoskit", help="kind cluster name (default: chaoskit)")
    inject.add_argument("--provider", default="kind", help="kind or existing (default: kind)")
    inject.add_argument("--kubeconfig", type=Path, help="kubeconfig file (existing provider)")
    inject.add_argument("--context", help="kubeconfig context (existing provider)")
    safety_options(inject)
    injector_options(inject)
    inject.add_argument("--dry-run", action="store_true", help="print the targets; inject nothing")


def fault_arguments(kind: str, words: Sequence[str]) -> dict[str, Any]:
    """The fault's keyword arguments from ``--name value`` pairs, converted to the types its method takes."""
    if kind not in FAULT_KINDS:
        raise UsageError(f"unknown fault kind {kind!r}: choose one of {', '.join(FAULT_KINDS)}")
    options = fault_options(kind)
    known = {name.replace("_", "-"): name for name in options.parameters}
    result: dict[str, Any] = {}
    rest = list(words)
    while rest:
        word = rest.pop(0)
        flag, _, inline = word.partition("=")
        name = known.get(flag.removeprefix("--")) if flag.startswith("--") else None
        if name is None:
            raise UsageError(f"{kind} takes no option {word!r}; its options: {', '.join('--' + k for k in known)}")
        hint = options.hints[name]
        if inline == "" and "=" not in word:
            if _is_bool(hint):  # --flag alone is true; --flag false (or no, 0) says otherwise
                boolean = rest and rest[0].lower() in ("true", "false", "yes", "no", "1", "0")
                result[name] = _convert(rest.pop(0), hint, flag) if boolean else True
                continue
            if not rest:
                raise UsageError(f"--{flag.removeprefix('--')} needs a value")
            inline = rest.pop(0)
        result[name] = _convert(inline, hint, flag)
    needed = (*options.required, "namespace")
    missing = [f"--{n.replace('_', '-')}" for n in needed if n in options.parameters and n not in result]
    if missing:
        raise UsageError(f"{kind} needs {', '.join(missing)} (see 'chaoskit inject --help')")
    return result


def _args(hint: object) -> tuple[object, ...]:
    union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    return typing.get_args(hint) if union else (hint,)


def _is_bool(hint: object) -> bool:
    return bool in _args(hint)


def _convert(text: str, hint: object, flag: str) -> Any:
    kinds = [a for a in _args(hint) if a is not type(None)]
    for kind in kinds:
        origin = typing.get_origin(kind)
        if origin is not None and origin.__name__ in ("Sequence", "tuple", "list"):
            return tuple(part for part in text.split(",") if part)
        if kind is bool:
            if text.lower() in ("true", "yes", "1"):
                return True
            if text.lower() in ("false", "no", "0"):
                return False
        if kind is int:
            try:
                return int(text)
            except ValueError:
                continue
        if kind is float:
            try:
                return float(text)
            except ValueError:
                continue
        if kind is str:
            return text
    wanted = " or ".join(getattr(k, "__name__", str(k)) for k in kinds)
    raise UsageError(f"{flag} takes {wanted}, not {text!r}")


def main(args: argparse.Namespace, extra: Sequence[str]) -> int:
    arguments = fault_arguments(args.kind, extra)
    duration = parse_duration(args.duration, allow_zero=True)
    safety = safety_from(args)  # a fault's own cap is its --max-share option
    check_fault(args.kind, arguments, safety)  # refused before anything touches the cluster
    spec = ClusterSpec(provider=args.provider, name=args.name, kubeconfig=args.kubeconfig, context=args.context)
    method = fault_options(args.kind).method
    # No sweep: a fault held by hand sits beside other runs, and 'chaoskit cleanup' sweeps when asked.
    with open_session(
        spec, injector=args.injector, agent_image=args.agent_image, safety=safety, sweep_first=False
    ) as session:
        kube, chaos = session.kube, session.chaos()
        watch = None
        if args.watch:
            namespace, _, name = args.watch.rpartition("/")
            watch = RecoveryWatch(kube, namespace or str(arguments.get("namespace", "default")), name)
        started = time.monotonic()
        with getattr(chaos, method)(**arguments) as record:
            if args.dry_run:
                print(f"dry run: {args.kind} would hit {', '.join(record.targets)}; nothing was injected")
                return 0
            print(
                f"{record.fault_id}: {args.kind} of {', '.join(record.targets)} injected and proven: {record.effect}",
                flush=True,
            )
            interrupted = False
            try:
                if watch is not None:
                    with watch:
                        _hold(duration, started, watch)
                else:
                    _hold(duration, started, None)
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM: undo now, and say so
                interrupted = True
                print(
                    f"{record.fault_id}: interrupted after {time.monotonic() - started:.0f} s: undoing it", flush=True
                )
        what = record.undo_proof if record.undoable else "nothing to undo (the controller replaces what was killed)"
        print(f"{record.fault_id}: undone and proven: {what}")
    return 130 if interrupted else 0


def _hold(duration: float, started: float, watch: RecoveryWatch | None) -> None:
    until = time.monotonic() + duration
    while (left := until - time.monotonic()) > 0:
        line = f"[chaoskit] held: {left:.0f} s left (injected {time.monotonic() - started:.0f} s ago)"
        if watch is not None:
            last = next((e for e in reversed(watch.events) if e.source == watch.workload_source), None)
            line += f"; {watch.name} {last.ready}/{last.desired} ready" if last else f"; {watch.name}: no status yet"
        print(line, file=sys.stderr, flush=True)
        time.sleep(min(1.0, max(0.0, left)))
