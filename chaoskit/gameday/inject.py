"""``chaoskit inject KIND``: one fault by hand, proven, held with a countdown, undone at the end or on Ctrl-C.

Each kind is a subcommand generated from the fault catalog, its options the
fault's own keyword arguments spelled with dashes (``--grace-seconds 0``,
``--peer-selector app=db``): the same names as the ``chaos.*`` methods and the
experiment files, read from the method's signature, so the command line can
never drift from the API, and ``chaoskit inject KIND --help`` lists them.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chaoskit.chaos import Chaos
from chaoskit.cluster import ClusterSpec, choose_provider
from chaoskit.cluster.base import NAME_ENV, default_name
from chaoskit.errors import UsageError
from chaoskit.faults.catalog import CATALOG
from chaoskit.gameday.command import api_rate, injector_options, rate_options, safety_from, safety_options
from chaoskit.gameday.spec import FAULT_KINDS, check_fault, fault_options, parse_duration
from chaoskit.observe import RecoveryWatch
from chaoskit.session import open_session

INJECT_HELP = """\
Each KIND is a subcommand with options of its own, the chaos.* method's
arguments of the same name with dashes for underscores:
'chaoskit inject KIND --help' lists them, with their types and defaults.

examples:
  chaoskit inject pod-kill --namespace shop --selector app=web --crash
  chaoskit inject partition --namespace shop --selector app=shop --peer-selector app=redis --duration 60s
  chaoskit inject node-failure --node chaoskit-worker --mode crash --duration 2m --watch shop/web
  chaoskit inject packet-loss --namespace shop --selector app=web --percent 30 --count 1 --duration 30s
"""

FAULT_DEST = "fault:"
"""The prefix of a fault option's destination on the parsed arguments (the rest is its keyword)."""


def add_parser(commands: Any) -> None:
    inject = commands.add_parser(
        "inject",
        help="inject one fault by hand, proven, held for --duration, undone at the end or on Ctrl-C",
        description="Inject one fault, prove it, hold it with a countdown, undo it and prove the undo.",
        epilog=INJECT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kinds = inject.add_subparsers(dest="kind", metavar="KIND", title="fault kinds", required=True)
    for kind in CATALOG:
        summary = kind.models.split(". ")[0].rstrip(".")
        sub = kinds.add_parser(
            kind.name,
            help=summary,
            description=f"{kind.name}: {kind.models}",
            epilog=f"The same options as chaos.{kind.method}(...) and a {kind.name} fault of an experiment file.",
            formatter_class=argparse.RawDescriptionHelpFormatter,
            allow_abbrev=False,  # --c must not be taken for --context, nor --count for --context
        )
        fault_options_group(sub.add_argument_group(f"{kind.name} options"), kind.name)
        held = sub.add_argument_group("holding it")
        held.add_argument("--duration", default="0s", help="how long to hold it (30s, 2m; default: undone once proven)")
        held.add_argument("--watch", metavar="[NS/]NAME", help="show this Deployment's ready replicas while it is held")
        held.add_argument("--dry-run", action="store_true", help="print the targets; inject nothing")
        where = sub.add_argument_group("the cluster")
        where.add_argument(
            "--name", default=default_name(), help=f"kind cluster name (default: ${NAME_ENV}, else chaoskit)"
        )
        where.add_argument(
            "--provider",
            choices=("kind", "existing"),
            help="kind or existing (default: existing when --context or --kubeconfig is given, else kind)",
        )
        where.add_argument("--kubeconfig", type=Path, help="kubeconfig file of an existing cluster")
        where.add_argument("--context", help="kubeconfig context of an existing cluster")
        rate_options(where)
        safety_options(sub)
        injector_options(sub)


SHORT = {"namespace": ("-n",), "selector": ("-l",)}
"""kubectl's short options, for the fault options of the same meaning."""


def fault_options_group(group: Any, kind: str) -> None:
    """One option per argument of ``kind``'s Chaos method, typed and with its default, on ``group``."""
    options = fault_options(kind)
    signature = inspect.signature(getattr(Chaos, options.method))
    for name in options.parameters:
        hint = options.hints[name]
        default = signature.parameters[name].default
        needed = name in options.required or name == "namespace"
        if needed:
            said = "required"
        elif default in (None, (), inspect.Parameter.empty):
            said = "optional"
        else:
            said = f"default: {default!r}"
        flag = "--" + name.replace("_", "-")
        flags = [*SHORT.get(name, ()), flag]  # kubectl's -n and -l
        what = _type_name(hint)
        help_text = f"{what}{'; ' + said if said else ''}"
        if _is_bool(hint):
            group.add_argument(
                flag,
                dest=FAULT_DEST + name,
                nargs="?",
                const="true",
                metavar="BOOL",
                default=argparse.SUPPRESS,
                help=f"{help_text} ({flag} alone is true)",
            )
        else:
            group.add_argument(
                *flags,
                dest=FAULT_DEST + name,
                metavar=what.upper().replace(" ", "_"),
                default=argparse.SUPPRESS,
                help=help_text,
            )


def arguments_from(kind: str, parsed: argparse.Namespace) -> dict[str, Any]:
    """The fault's keyword arguments, as its method takes them, from the parsed options of ``inject KIND``."""
    options = fault_options(kind)
    result: dict[str, Any] = {}
    for dest, text in vars(parsed).items():
        if dest.startswith(FAULT_DEST):
            name = dest.removeprefix(FAULT_DEST)
            result[name] = _convert(text, options.hints[name], "--" + name.replace("_", "-"))
    needed = (*options.required, "namespace")
    missing = [f"--{n.replace('_', '-')}" for n in needed if n in options.parameters and n not in result]
    if missing:
        raise UsageError(f"{kind} needs {', '.join(missing)} (see 'chaoskit inject {kind} --help')")
    return result


def fault_arguments(kind: str, words: Sequence[str]) -> dict[str, Any]:
    """The fault's keyword arguments from its options as a command line writes them (``--percent 12.5``)."""
    if kind not in FAULT_KINDS:
        raise UsageError(f"unknown fault kind {kind!r}: choose one of {', '.join(FAULT_KINDS)}")
    parser = _Parser(prog=f"chaoskit inject {kind}", allow_abbrev=False, add_help=False)
    fault_options_group(parser, kind)
    parsed, extra = parser.parse_known_args(list(words))
    if extra:
        raise UsageError(f"{kind} takes no option {' '.join(extra)} (see 'chaoskit inject {kind} --help')")
    return arguments_from(kind, parsed)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _type_name(hint: object) -> str:
    kinds = [a for a in _args(hint) if a is not type(None)]
    names = []
    for kind in kinds:
        origin = typing.get_origin(kind)
        if origin is not None and origin.__name__ in ("Sequence", "tuple", "list"):
            names.append("list")  # A,B,C
        elif typing.get_origin(kind) is typing.Literal:
            names.append("|".join(str(v) for v in typing.get_args(kind)))
        else:
            names.append(getattr(kind, "__name__", str(kind)))
    return " or ".join(dict.fromkeys(names))


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


def main(args: argparse.Namespace) -> int:
    arguments = arguments_from(args.kind, args)
    duration = parse_duration(args.duration, allow_zero=True)
    safety = safety_from(args)  # a fault's own cap is its --max-share option
    check_fault(args.kind, arguments, safety)  # refused before anything touches the cluster
    provider = choose_provider(
        args.provider, args.context, args.kubeconfig, ("--provider", "--context", "--kubeconfig")
    )
    spec = ClusterSpec(
        provider=provider, name=args.name, kubeconfig=args.kubeconfig, context=args.context, api_rate=api_rate(args)
    )
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
