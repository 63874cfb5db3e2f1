"""The commands that read and repair what faults left in a cluster: ``chaoskit status``, ``cleanup``, ``abort``
and ``agent``; and the options they share with the rest of the command line (``-o``, ``-n``, ``-l``).

:mod:`chaoskit.cli` parses the command line and hands each of these its arguments and the cluster they name.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from chaoskit.adapters.nodes import INJECTOR_NAMESPACE, INJECTOR_SELECTOR
from chaoskit.cluster import ClusterSpec
from chaoskit.faults.scope import Scope


def output_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        choices=("text", "json", "yaml"),
        default="text",
        help="text (default), or json or yaml for scripts (the same fields either way)",
    )


def scope_options(parser: argparse.ArgumentParser) -> None:
    """``-n``/``-l``: the faults (and test namespaces) a command acts on; see :mod:`chaoskit.faults.scope`."""
    parser.add_argument(
        "-n",
        "--namespace",
        metavar="NS",
        help="only faults on pods of namespace NS (and, without -l, test namespace NS itself); node-wide faults "
        "are in no namespace, so left out",
    )
    parser.add_argument(
        "-l",
        "--selector",
        metavar="SELECTOR",
        help="only faults on pods matching this label selector now (kubectl's syntax: app=web,tier!=db); "
        "with -n, in that namespace",
    )


def scope_of(args: argparse.Namespace) -> Scope:
    from chaoskit.faults.scope import Scope

    return Scope(args.namespace, args.selector)


def emit(args: argparse.Namespace, document: dict[str, Any], text: list[str]) -> None:
    """Print ``text`` line by line, or ``document`` as JSON or YAML, as ``-o`` asks."""
    if args.output == "json":
        print(json.dumps(document, indent=2))
    elif args.output == "yaml":
        import yaml

        print(yaml.safe_dump(document, sort_keys=False), end="")
    else:
        print("\n".join(text))


MANIFEST_IMAGE = "chaoskit/injector:set-me"
"""The image the printed manifests name when none is given: a kustomization's ``images:`` replaces it."""


def agent(args: argparse.Namespace, spec: ClusterSpec) -> int:
    from chaoskit.cluster import injector
    from chaoskit.faults import objects
    from chaoskit.faults.scope import Scope
    from chaoskit.session import open_session

    if args.action == "manifests":
        print(injector.manifests_yaml(args.image), end="")
        return 0

    if args.action == "image":
        from chaoskit.provision import images

        print(images.build_injector_image())
        return 0
    scope = scope_of(args) if args.action == "status" else Scope()
    with open_session(spec, bring_up=False, reach_nodes=False, sweep_first=False) as session:
        cluster, kube = session.cluster, session.kube
        if args.action == "install":
            image = injector.install(cluster, kube, args.image)
            print(f"injector {image} runs on every node of {cluster.name}")
        elif args.action == "remove":
            found = injector.remove(kube)
            print(f"injector {'removed from' if found else 'was not installed in'} {cluster.name}")
        else:
            current = injector.installed_image(kube)
            pods = kube.pods(INJECTOR_NAMESPACE, INJECTOR_SELECTOR)
            within = scope.resolve(kube)
            every = objects.listed(kube)
            recorded = [f for f in every if within.holds(f)]
            text = [f"injector of {cluster.name}: {current or 'not installed'}"]
            text += [f"  {pod.metadata.name:32} {pod.spec.node_name or '-':28} {pod.status.phase}" for pod in pods]
            where = f"{scope.within()} ({len(every) - len(recorded)} outside)" if not scope.whole else ""
            text.append(f"faults recorded in the cluster{where}: {len(recorded)}")
            for found_fault in recorded:
                owner = found_fault.owner
                state = "owner alive" if found_fault.owner_alive else "OWNER GONE"
                undone = f", undone by the agent on {', '.join(found_fault.undone_on)}" if found_fault.undone_on else ""
                text.append(
                    f"  {found_fault.fault_id}: {found_fault.kind}, {state} ({owner.get('host', '?')} pid "
                    f"{owner.get('pid', '?')}: {owner.get('command', '?')}){undone}"
                )
            document = {
                "cluster": cluster.name,
                "image": current,
                "pods": [
                    {"name": pod.metadata.name, "node": pod.spec.node_name, "phase": pod.status.phase} for pod in pods
                ],
                "scope": within.scope.describe() or None,
                "outsideScope": len(every) - len(recorded),
                "faults": [found_fault.as_json() for found_fault in recorded],
            }
            emit(args, document, text)
    return 0


def cleanup(args: argparse.Namespace, spec: ClusterSpec) -> int:
    from chaoskit.session import open_session

    # Attach, never create; reach nodes by an installed agent only: cleanup never restarts agents under live runs.
    scope = scope_of(args)
    with open_session(spec, bring_up=False, injector=args.injector, install_agent=False, sweep_first=False) as session:
        swept = session.sweep(scope)
    cluster, result, namespaces = session.cluster, swept.faults, swept.namespaces
    text = [
        f"cleanup of {cluster.name}{scope.within()}: {len(result.undone)} fault(s) undone, {len(result.moot)} moot, "
        f"{len(result.failed)} NOT undone, {len(namespaces)} test namespace(s) deleted"
    ]
    if result.outside:
        text.append(f"  left alone (outside the scope): {result.outside} fault(s) of dead runs")
    text += [f"  undone: {line}" for line in result.undone]
    text += [f"  moot (settled, its targets are gone): {line}" for line in result.moot]
    text += [f"  left alone (its run is still going): {fault_id}" for fault_id in result.skipped_live]
    text += [f"  NOT UNDONE: {failure}" for failure in result.failed]
    if result.failed:
        text.append(
            "  what is listed as NOT UNDONE is still in the cluster: fix what the line says, then run cleanup again"
        )
    document = {
        "cluster": cluster.name,
        "scope": scope.describe() or None,
        "outsideScope": result.outside,
        "undone": list(result.undone),
        "moot": list(result.moot),
        "leftAlone": list(result.skipped_live),
        "failed": list(result.failed),
        "namespacesDeleted": list(namespaces),
    }
    emit(args, document, text)
    return 1 if result.failed else 0


def status(args: argparse.Namespace, spec: ClusterSpec) -> int:
    from chaoskit import control
    from chaoskit.session import open_session

    scope = scope_of(args)
    with open_session(spec, bring_up=False, reach_nodes=False, sweep_first=False) as session:
        report = control.status(session.cluster, session.kube, scope)
    emit(args, report.as_json(), report.lines())
    return 1 if report.residue else 0


def abort(args: argparse.Namespace, spec: ClusterSpec) -> int:
    from chaoskit import control
    from chaoskit.session import open_session

    scope = scope_of(args)
    with open_session(spec, bring_up=False, injector=args.injector, install_agent=False, sweep_first=False) as session:
        cluster, result = session.cluster, control.abort(session.cluster, session.kube, scope=scope)
    text = [
        f"abort of {cluster.name}{scope.within()}: {len(result.undone)} fault(s) undone in {result.seconds:.1f} s, "
        f"{len(result.moot)} moot, {len(result.failed)} NOT undone"
    ]
    if result.outside:
        text.append(f"  left in place (outside the scope): {result.outside} fault(s)")
    text += [f"  undone: {line}" for line in result.undone]
    text += [f"  moot (its targets are gone): {line}" for line in result.moot]
    text += [f"  NOT UNDONE: {line}" for line in result.failed]
    document = {
        "cluster": cluster.name,
        "scope": scope.describe() or None,
        "outsideScope": result.outside,
        "seconds": round(result.seconds, 2),
        "undone": list(result.undone),
        "moot": list(result.moot),
        "failed": list(result.failed),
    }
    emit(args, document, text)
    return 1 if result.failed else 0
