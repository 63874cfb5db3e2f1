"""The ``chaoskit`` command line: clusters for people and game days.

    chaoskit cluster up       create or reuse a cluster (installs and builds what it needs)
    chaoskit cluster down     delete it and everything it left on the machine
    chaoskit cluster status   show its nodes without changing anything
    chaoskit cleanup          undo faults a killed run left behind, delete leftover test namespaces
    chaoskit status           the faults in place now (who injected them, since when) and test namespaces
    chaoskit abort            undo every fault in place now, live runs' included: the big red button
    chaoskit run FILE         run an experiment file (*.chaos.yaml) as a game day, with a live view
    chaoskit validate FILE... check experiment files offline: no cluster, no Docker
    chaoskit completion SH    print the shell completion script (bash, zsh, tcsh)
    chaoskit inject KIND      one fault by hand: proven, held for --duration, undone at the end or on Ctrl-C
    chaoskit image build      build the image of a directory with a Dockerfile, on chaoskit's base image
    chaoskit image load       load local images into every node of a kind cluster

Every error is one line saying what to do, with exit status 2; no tracebacks.
Bad arguments too: argparse's usage block is replaced by one line naming the
``--help`` that shows the usage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from chaoskit import upkeep
from chaoskit.cluster import PROVIDERS, ClusterSpec, ClusterStatus, choose_provider, get_provider
from chaoskit.cluster.base import (
    DEFAULT_NODE_PORTS,
    KUBERNETES_ENV,
    NAME_ENV,
    default_kubernetes,
    default_name,
    parse_node_ports,
)
from chaoskit.errors import ChaoskitError
from chaoskit.provision.versions import DEFAULT_LINE

IMAGE_BUILD_HELP = """\
The directory holds a Dockerfile that starts on chaoskit's base image, which
the build passes as BASE, so no registry is needed:

    ARG BASE
    FROM $BASE
    COPY app.py /opt/app/
    CMD ["python3", "/opt/app/app.py"]

The base image is Debian bookworm's minbase with python3 (3.11, standard
library only: no pip), iptables, nftables, conntrack, iproute2, dnsmasq-base,
ca-certificates and procps; no apt lists, docs or locales. It sets PATH and
nothing else: your Dockerfile gives the CMD or ENTRYPOINT; it runs as root.
The image is named chaoskit/<dirname>:<digest of the directory's files>
unless --tag names it; an unchanged directory is not built again. Its name is
the one line printed on stdout.

examples:
  chaoskit image build ./myapp
  chaoskit image build ./myapp --tag myapp:dev
  chaoskit image load "$(chaoskit image build ./myapp)"
"""

IMAGE_LOAD_HELP = """\
Each image is copied into the containerd of every node of the kind cluster;
nodes that hold it already (same name, same image ID) are skipped. Pods use it
with imagePullPolicy: IfNotPresent (or Never). Clusters of the existing
provider cannot be loaded into: push the image to a registry they pull from.

examples:
  chaoskit image load chaoskit/myapp:3f2a9c1b7d4e
  chaoskit image load myapp:dev redis:7 --name chaoskit
"""


AGENT_HELP = """\
On kind, 'install' builds the injector image and loads it into the nodes. On
any other cluster, build it with 'chaoskit agent image', push it to a registry
the cluster pulls from, and pass --image. pytest installs it by itself with
--chaos-injector agent (the default outside kind).

Who may exec into its pods or write ConfigMaps in chaoskit-system is root on
every node: grant those rights as such.

examples:
  chaoskit agent install
  chaoskit agent status
  chaoskit agent install --provider existing --context staging --image registry.example/chaoskit/injector:r3-...
"""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other error of the command line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"chaoskit: error: {message} (see '{self.prog} --help')\n")


def _version() -> str:
    """The installed distribution's version ("unknown" when chaoskit runs from a tree that is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("chaoskit")
    except PackageNotFoundError:
        return "unknown"


def _talk_options(parser: argparse.ArgumentParser) -> None:
    """``-v``/``-q`` on ``parser`` and on every command under it, so they go before or after the command."""
    talk = parser.add_mutually_exclusive_group()
    suppress = argparse.SUPPRESS if parser.prog != "chaoskit" else False
    talk.add_argument(
        "-v", "--verbose", action="store_true", default=suppress, help="debug lines too (each host command it runs)"
    )
    talk.add_argument(
        "-q", "--quiet", action="store_true", default=suppress, help="no progress lines: warnings and errors alone"
    )
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                _talk_options(sub)


def _completion(shell: str) -> int:
    """Print ``shell``'s completion script, made from the parser itself (shtab): it cannot fall behind it."""
    import shtab

    print(shtab.complete(_parser(), shell=shell))
    return 0


def _parser() -> argparse.ArgumentParser:
    from chaoskit.gameday.command import EXPERIMENT_FILES, injector_options

    parser = _Parser(prog="chaoskit", description="Chaos and resilience testing for Kubernetes.")
    parser.add_argument("--version", action="version", version=f"chaoskit {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cluster = commands.add_parser("cluster", help="create, inspect and delete test clusters")
    actions = cluster.add_subparsers(dest="action", required=True, metavar="ACTION")
    cleanup = commands.add_parser(
        "cleanup",
        help="undo faults a killed run left behind and delete leftover test namespaces",
        description="undo faults a killed run left behind and delete leftover test namespaces",
    )
    _cluster_options(cleanup, creating=False)
    injector_options(cleanup, installs=False)
    upkeep.scope_options(cleanup)
    upkeep.output_option(cleanup)
    status = commands.add_parser(
        "status",
        help="the faults in place now, who injected them and since when, and the test namespaces",
        description="Show the faults in place in the cluster now (from its fault ledger): which, since when, "
        "and which process injected them (running, or dead and so residue); and the test namespaces.",
        epilog="exit status: 0 when nothing of a dead run is there, 1 when residue is (faults, or test namespaces "
        "not already being deleted, of runs that are gone: 'chaoskit cleanup' undoes them)\n\n"
        "examples:\n  chaoskit status\n  chaoskit status --name chaoskit -o json\n  chaoskit status -n shop -l app=web",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _cluster_options(status, creating=False)
    upkeep.scope_options(status)
    upkeep.output_option(status)
    abort = commands.add_parser(
        "abort",
        help="undo every fault in place now, live runs' included (the big red button)",
        description="Undo and prove the undo of every fault in place in the cluster now, whoever injected it. "
        "Live runs (a pytest experiment, 'chaoskit run') see the abort within a second: they refuse new faults, "
        "keep their load running to watch the recovery, and fail with 'aborted externally by chaoskit abort'.",
        epilog="examples:\n  chaoskit abort\n  chaoskit abort --name staging\n  chaoskit abort -n shop -l app=web",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _cluster_options(abort, creating=False)
    injector_options(abort, installs=False)
    upkeep.scope_options(abort)
    upkeep.output_option(abort)
    from chaoskit.gameday import command as run_command

    run_command.add_parser(commands)
    from chaoskit.gameday import inject as inject_command

    inject_command.add_parser(commands)
    validate = commands.add_parser(
        "validate",
        help="check experiment files offline: no cluster, no Docker",
        description="Check experiment files (*.chaos.yaml) as 'chaoskit run' and pytest would, without a cluster "
        "or Docker: every problem of every file, one line each, as FILE:LINE: FIELD: PROBLEM; FIX.",
        epilog="exit status: 0 when every file is valid, 1 when one is not\n\n"
        "examples:\n  chaoskit validate experiments/*.chaos.yaml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    files = validate.add_argument("files", nargs="+", type=Path, metavar="FILE", help="experiment files to check")
    files.complete = EXPERIMENT_FILES  # type: ignore[attr-defined]  # how shells complete it (shtab)
    completion = commands.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh or tcsh)",
        description="Print the completion script of chaoskit for SHELL: commands, options, fault kinds and "
        "experiment files complete as you type.",
        epilog="examples:\n  chaoskit completion bash > ~/.local/share/bash-completion/completions/chaoskit\n"
        '  chaoskit completion zsh > "${fpath[1]}/_chaoskit"',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    completion.add_argument("shell", choices=("bash", "zsh", "tcsh"), metavar="SHELL", help="bash, zsh or tcsh")
    for action, text in (
        ("up", "create or reuse a cluster; installs Docker and kind and builds the node image if needed"),
        ("down", "delete the cluster, its containers, volumes and network"),
        ("status", "show the cluster's nodes"),
    ):
        sub = actions.add_parser(action, help=text, description=text)
        _cluster_options(sub, creating=action == "up")
    agent = commands.add_parser(
        "agent",
        help="the injector agent: faults on any cluster, undone by the cluster itself when a run dies",
        description="The injector agent: a privileged DaemonSet (chaoskit-injector in chaoskit-system) through "
        "which faults reach nodes on any cluster, and which undoes the faults of a run whose owner lease expired.",
        epilog=AGENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    agent_actions = agent.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (
        ("install", "install or update the injector and wait until it runs on every node"),
        ("status", "the injector's pods, and the faults the cluster records with their owners"),
        ("remove", "delete the injector (the fault records and their namespace stay)"),
    ):
        sub = agent_actions.add_parser(action, help=text, description=text)
        _cluster_options(sub, creating=False)
        if action == "install":
            sub.add_argument("--image", help="the injector image to pull (needed outside kind)")
        if action == "status":
            upkeep.scope_options(sub)
            upkeep.output_option(sub)
    agent_actions.add_parser(
        "image", help="build the injector image locally and print its name (to push to a registry)"
    )
    manifests = agent_actions.add_parser(
        "manifests",
        help="print the injector's objects as YAML, to review and apply yourself (kubectl, kustomize, GitOps)",
        description="Print every object 'agent install' applies, as one YAML stream: the Fault CRD, the "
        "chaoskit-runner ClusterRole, the agent's namespace, account, Role, RoleBinding and DaemonSet. Nothing "
        "is applied. deploy/agent/ in the repository holds them as a kustomize base.",
    )
    manifests.add_argument(
        "--image",
        default=upkeep.MANIFEST_IMAGE,
        help=f"the injector image the DaemonSet pulls (default: {upkeep.MANIFEST_IMAGE})",
    )
    image = commands.add_parser("image", help="build your own images and load them into a cluster")
    image_actions = image.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = image_actions.add_parser(
        "build",
        help="build the image of a directory with a Dockerfile, on chaoskit's base image",
        description="Build the image of DIR (a directory with a Dockerfile) and print its name.",
        epilog=IMAGE_BUILD_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    build.add_argument("directory", type=Path, metavar="DIR", help="the directory that holds the Dockerfile")
    build.add_argument("--tag", metavar="T", help="the image's name (default: chaoskit/<dirname>:<content digest>)")
    load = image_actions.add_parser(
        "load",
        help="load local images into every node of a kind cluster",
        description="Load local Docker images into every node of a kind cluster.",
        epilog=IMAGE_LOAD_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    load.add_argument("images", nargs="+", metavar="IMAGE", help="local image names (as 'docker images' lists them)")
    _cluster_options(load, creating=False)
    image_actions.add_parser(
        "load-worker",
        help="build the image of in-cluster load workers and print its name (to push to a registry)",
        description="Build chaoskit's load worker image (its base image, this machine's Locust version and "
        "chaoskit's load modules) and print its name. kind clusters get it loaded by the load itself; for any "
        "other cluster, push it to a registry the cluster pulls from and name it in CHAOSKIT_LOAD_IMAGE.",
    )
    _talk_options(parser)
    return parser


def _cluster_options(parser: argparse.ArgumentParser, creating: bool) -> None:
    from chaoskit.gameday.command import rate_options

    parser.add_argument(
        "--provider",
        choices=PROVIDERS,
        help="kind or existing (default: existing when --context or --kubeconfig is given, else kind)",
    )
    parser.add_argument(
        "--name", default=default_name(), help=f"kind cluster name (default: ${NAME_ENV}, else chaoskit)"
    )
    parser.add_argument("--kubeconfig", type=Path, help="kubeconfig file of an existing cluster")
    parser.add_argument("--context", help="kubeconfig context of an existing cluster")
    rate_options(parser)
    if creating:
        parser.add_argument("--workers", type=int, default=2, help="worker nodes (default: 2)")
        parser.add_argument("--node-image", help="force this kind node image")
        parser.add_argument(
            "--kubernetes",
            metavar="LINE",
            default=default_kubernetes(),
            help=f"the Kubernetes line of chaoskit's own node image: 1.20 (from Debian's source) or 1.37 (built "
            f"from Go modules, about 20 min the first time); default: ${KUBERNETES_ENV}, else {DEFAULT_LINE}",
        )
        parser.add_argument(
            "--node-ports",
            default=f"{DEFAULT_NODE_PORTS[0]}-{DEFAULT_NODE_PORTS[-1]}",
            help="NodePorts to publish on 127.0.0.1, as FIRST-LAST (default: %(default)s)",
        )
        parser.add_argument(
            "--no-provision",
            action="store_true",
            help="do not install packages or start Docker; fail if they are missing",
        )
        parser.add_argument(
            "--keep-existing",
            action="store_true",
            help="never delete a running cluster: use it as it is, even if it differs from these options "
            "(a shared cluster, or one another job made); create one only when none runs",
        )


CLI_FLAGS = ("--provider", "--context", "--kubeconfig")


def _spec(args: argparse.Namespace) -> ClusterSpec:
    from chaoskit.gameday.command import api_rate

    extra = {}
    if getattr(args, "action", None) == "up":
        extra = {
            "workers": args.workers,
            "node_image": args.node_image,
            "node_ports": parse_node_ports(args.node_ports),
            "kubernetes": args.kubernetes,
        }
    provider = choose_provider(args.provider, args.context, args.kubeconfig, CLI_FLAGS)
    return ClusterSpec(
        provider=provider,
        name=args.name,
        kubeconfig=args.kubeconfig,
        context=args.context,
        api_rate=api_rate(args),
        **extra,
    )


def _print_status(status: ClusterStatus) -> None:
    if not status.exists:
        print(f"cluster {status.name}: does not exist (create it with 'chaoskit cluster up')")
        return
    print(f"cluster {status.name}: Kubernetes {status.server_version or 'unreachable'}")
    if status.kubeconfig:
        print(f"  export KUBECONFIG={status.kubeconfig}")
    for node in status.nodes:
        container = f"  container {node.container_state}" if node.container_state else ""
        print(f"  {node.name:32} {node.role:14} {'Ready' if node.ready else 'NotReady':9}{container}")
    if status.problem:
        print(f"  problem: {status.problem}")


def _validate(args: argparse.Namespace) -> int:
    """Load each file as a run would, offline; print each one's verdict, and every problem of the bad ones."""
    from chaoskit.gameday.spec import ExperimentFileError, load_experiment

    bad = 0
    for path in args.files:
        try:
            found = load_experiment(path)
        except ExperimentFileError as exc:
            bad += 1
            print(f"{path}: NOT valid, {len(exc.problems)} problem(s)")
            for problem in exc.problems:
                print(f"  {problem}")
            continue
        kinds = ", ".join(sorted({f.kind for f in found.faults}))
        counts = f"{len(found.faults)} fault(s): {kinds}; {len(found.objectives)} objective(s)"
        print(f"{path}: valid ({found.name!r}: {counts})")
    if len(args.files) > 1:
        print(f"{len(args.files) - bad} of {len(args.files)} file(s) valid")
    return 1 if bad else 0


def _clear_ledger(name: str) -> None:
    """Delete a deleted cluster's fault ledger: the faults it records went with the cluster."""
    from chaoskit.adapters.shell import say
    from chaoskit.state.ledger import Ledger

    ledger = Ledger(name)
    dropped = ledger.clear()
    if dropped:
        say(
            f"dropped {len(dropped)} unsettled fault(s) from the ledger {ledger.path}: they went with the cluster "
            f"({', '.join(e.fault_id for e in dropped)})"
        )


def _image(args: argparse.Namespace) -> int:
    from chaoskit import images

    if args.action == "build":
        print(images.build(args.directory, args.tag))
        return 0
    if args.action == "load-worker":
        from chaoskit.provision.images import build_load_image

        print(build_load_image())
        return 0
    names = [images.image_name(text) for text in args.images]
    provider = choose_provider(args.provider, args.context, args.kubeconfig, CLI_FLAGS)
    if provider != "kind":
        raise images.not_loadable(provider, " ".join(names))
    images.require_local(names)  # all of them before any is loaded: a typo must not leave a half-done load
    cluster = images.kind_cluster(args.name)
    for name in names:
        images.load(cluster, name)  # a progress line each: loaded into which nodes, or skipped
    print(f"{len(names)} image(s) on every node of {cluster.name}: {', '.join(names)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "inject":  # say whose options they are not
        message = f"{args.kind} takes no option {' '.join(extra)} (see 'chaoskit inject {args.kind} --help')"
        print(f"chaoskit: error: {message}", file=sys.stderr)
        return 2
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from chaoskit.adapters import shell
    from chaoskit.faults import signals

    shell.set_level("debug" if args.verbose else "warning" if args.quiet else "info")
    signals.install()  # SIGTERM unwinds like Ctrl-C: an undo under way finishes, nothing is cut half-way
    try:
        if args.command == "cleanup":
            return upkeep.cleanup(args, _spec(args))
        if args.command == "status":
            return upkeep.status(args, _spec(args))
        if args.command == "abort":
            return upkeep.abort(args, _spec(args))
        if args.command == "inject":
            from chaoskit.gameday import inject as inject_command

            return inject_command.main(args)
        if args.command == "validate":
            return _validate(args)
        if args.command == "completion":
            return _completion(args.shell)
        if args.command == "run":
            from chaoskit.gameday import command as run_command

            return run_command.main(args)
        if args.command == "image":
            return _image(args)
        if args.command == "agent":
            return upkeep.agent(args, _spec(args))
        if args.command == "cluster":
            provision = args.action == "up" and not args.no_provision
            keep = args.action == "up" and args.keep_existing
            spec = _spec(args)
            provider = get_provider(spec.provider, provision=provision, recreate=not keep)
            if args.action == "up":
                cluster = provider.up(spec)
                print(f"cluster {cluster.name} is ready")
                if cluster.kubeconfig:
                    print(f"export KUBECONFIG={cluster.kubeconfig}")
            elif args.action == "down":
                provider.down(spec)
                _clear_ledger(spec.name)
                print(f"cluster {spec.name} deleted")
            else:
                status = provider.status(spec)
                _print_status(status)
                return 0 if status.exists and not status.problem else 1
    except ChaoskitError as exc:
        print(f"chaoskit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("chaoskit: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
