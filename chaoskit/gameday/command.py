"""``chaoskit run FILE``: an experiment file as a game day, with a live view, or a line a second in CI."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from chaoskit import targets
from chaoskit.adapters.nodes import INJECTORS
from chaoskit.adapters.rate import ApiRate
from chaoskit.adapters.shell import say
from chaoskit.cluster import ClusterSpec, choose_provider
from chaoskit.cluster.base import NAME_ENV, default_name
from chaoskit.errors import FaultUndoFailed, UsageError
from chaoskit.faults.safety import Safety
from chaoskit.gameday.runner import GameDay, planned, result_exit_code
from chaoskit.gameday.spec import ExperimentFile, load_experiment
from chaoskit.gameday.view import Keys, LineView, LiveView
from chaoskit.grafana import GrafanaAnnotations
from chaoskit.prometheus.service import PrometheusService, reach_prometheus
from chaoskit.report import write_junit, write_reports
from chaoskit.results import ExperimentResult
from chaoskit.session import open_session

RUN_HELP = """\
The file describes the system (a namespace, or one deployed for the run), the
load, an optional steady state, the timeline of faults, stop conditions and
objectives; 'chaoskit run' checks all of it before anything runs (errors name
file:line, the field and the fix; the JSON Schema for editors is
schema/chaoskit-experiment.schema.json).

On a terminal it shows a live view: phase, each fault's state, requests/s,
error rate, p95, ready replicas, each stop condition against its threshold,
time elapsed and left. Keys: p pauses (undoes the faults, keeps the load), r
resumes the timeline, a (or Ctrl-C) aborts: every fault undone, the load
stopped, the reports written. SIGTERM aborts too. Without a terminal it prints
one progress line a second. It ends with the verdict line and writes
chaoskit-journal.json, chaoskit-report.html and chaoskit-junit.xml.

Exit status: 0 the experiment passed, 1 it failed or was aborted, 2 the file or
the command line is wrong.

examples:
  chaoskit run experiments/web-pod-kill.chaos.yaml
  chaoskit run experiments/web-pod-kill.chaos.yaml --dry-run
  chaoskit run staging.chaos.yaml --provider existing --context staging --allow-context staging
"""


EXPERIMENT_FILES = {"bash": "_shtab_compgen_files", "zsh": "_files -g '*.chaos.yaml'", "tcsh": "f:*.chaos.yaml"}
"""How a shell completes an experiment file argument (shtab's ``complete``, per shell: ``chaoskit completion``)."""


def add_parser(commands: Any) -> None:
    run = commands.add_parser(
        "run",
        help="run an experiment file (*.chaos.yaml) as a game day, with a live view",
        description="Run an experiment file: its faults under load, live, to one verdict.",
        epilog=RUN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    file = run.add_argument("file", type=Path, metavar="FILE", help="the experiment file (*.chaos.yaml)")
    file.complete = EXPERIMENT_FILES  # how shells complete it (shtab)
    run.add_argument("--dry-run", action="store_true", help="print the plan with the resolved targets; inject nothing")
    run.add_argument("--report-dir", type=Path, default=Path("reports"), help="where the reports go (default: reports)")
    run.add_argument(
        "--prometheus-url",
        metavar="URL",
        help="the Prometheus for PromQL objectives and stop conditions (the cluster's own, on 127.0.0.1 or a host "
        "allowed with --allow-target); default: the file's prometheus: url, else chaoskit deploys its own for the run",
    )
    run.add_argument(
        "--prometheus-service",
        metavar="NS/SVC:PORT",
        help="the cluster's own Prometheus through a port-forward to its Service (e.g. "
        "monitoring/prometheus-k8s:9090), for a Prometheus the host cannot reach; default: the file's prometheus: "
        "service",
    )
    run.add_argument(
        "--grafana-url",
        metavar="URL",
        help="annotate each fault in this Grafana, from injection to undo (token: $CHAOSKIT_GRAFANA_TOKEN; on "
        "127.0.0.1 or a host allowed with --allow-target)",
    )
    run.add_argument("--no-live", action="store_true", help="one progress line a second even on a terminal")
    run.add_argument(
        "--provider",
        choices=("kind", "existing"),
        help="kind or existing (default: the file's; else existing when --context or --kubeconfig is given, else kind)",
    )
    run.add_argument("--name", help=f"kind cluster name (default: the file's, else ${NAME_ENV}, else chaoskit)")
    run.add_argument("--kubeconfig", type=Path, help="kubeconfig file of an existing cluster")
    run.add_argument("--context", help="kubeconfig context of an existing cluster")
    rate_options(run)
    safety_options(run)
    injector_options(run)
    run.add_argument("--max-share", type=float, default=0.5, help="blast-radius cap per fault (default: 0.5)")


def rate_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kube-qps",
        type=float,
        metavar="QPS",
        help="API requests a second each of chaoskit's clients may make on average (default: 50)",
    )
    parser.add_argument(
        "--kube-burst", type=int, metavar="N", help="API requests each client may make at once (default: 100)"
    )


def api_rate(args: argparse.Namespace) -> ApiRate | None:
    """The API client rate the command line asks for (None: the default)."""
    return ApiRate.given(getattr(args, "kube_qps", None), getattr(args, "kube_burst", None))


def safety_options(parser: argparse.ArgumentParser) -> None:
    """The safety rules' options, as pytest's ``--chaos-allow-*`` (``run`` and ``inject``)."""
    parser.add_argument(
        "--allow-context", action="append", default=[], metavar="CTX", help="allow faults in this non-kind context"
    )
    parser.add_argument(
        "--allow-namespace", action="append", default=[], metavar="NS", help="allow faults in this protected namespace"
    )
    parser.add_argument("--allow-control-plane", action="store_true", help="allow node faults on control-plane nodes")
    parser.add_argument(
        "--allow-target",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="allow load and Prometheus queries to this host beyond 127.0.0.1",
    )


def injector_options(parser: argparse.ArgumentParser, installs: bool = True) -> None:
    """How faults reach nodes, as pytest's ``--chaos-injector`` and ``--chaos-agent-image``; for a command that
    only undoes (``installs=False``: ``cleanup``, ``abort``), the choice alone, as it never installs the agent."""
    how = "the in-cluster injector, installed if needed" if installs else "the injector installed in the cluster"
    parser.add_argument(
        "--injector",
        choices=INJECTORS,
        help=f"how faults reach nodes: docker (kind only) or agent, {how} (default: docker on kind, agent elsewhere)",
    )
    if installs:
        parser.add_argument(
            "--agent-image",
            metavar="IMAGE",
            help="the injector's image for a cluster that is not kind (from a registry)",
        )


def safety_from(args: argparse.Namespace, max_share: float = 0.5) -> Safety:
    """The safety rules the options of :func:`safety_options` (and ``--dry-run``) ask for; the allowed
    targets are allowed for the process (:func:`chaoskit.targets.allow`)."""
    targets.allow(args.allow_target)
    return Safety(
        allowed_contexts=tuple(args.allow_context),
        allowed_namespaces=tuple(args.allow_namespace),
        allow_control_plane=args.allow_control_plane,
        max_share=max_share,
        dry_run=args.dry_run,
        front_end="cli",
    )


def spec_for(args: argparse.Namespace, experiment: ExperimentFile) -> ClusterSpec:
    """The cluster the options name, else the one the file's ``cluster:`` names, else the kind cluster
    ``$CHAOSKIT_CLUSTER`` names, else kind's ``chaoskit``."""
    choice = experiment.cluster
    context = args.context or (choice.context if choice else None)
    provider = choose_provider(
        args.provider or (choice.provider if choice else None),
        context,
        args.kubeconfig,
        ("--provider", "--context", "--kubeconfig"),
    )
    return ClusterSpec(
        provider=provider,
        name=args.name or (choice.name if choice and choice.name else default_name()),
        kubeconfig=args.kubeconfig,
        context=context,
        api_rate=api_rate(args),
    )


def main(args: argparse.Namespace) -> int:
    experiment = load_experiment(args.file)
    safety = safety_from(args, args.max_share)
    experiment.check_safety(safety)  # refused before anything touches the cluster
    hooks = GrafanaAnnotations(args.grafana_url) if args.grafana_url else None  # a bad URL is refused here too
    url = args.prometheus_url
    service = (
        PrometheusService.parse(args.prometheus_service, "--prometheus-service") if args.prometheus_service else None
    )
    if url and service is not None:
        raise UsageError("--prometheus-url and --prometheus-service are both given: name one Prometheus")
    if not (url or service):  # the command line wins over the file
        url, service = experiment.prometheus_url, experiment.prometheus_service
    try:
        session = open_session(
            spec_for(args, experiment), injector=args.injector, agent_image=args.agent_image, safety=safety
        )
    except FaultUndoFailed as exc:
        say(str(exc))
        return 1
    with session, reach_prometheus(session.kube, url, service) as prometheus:  # None: the run deploys its own
        game = GameDay(experiment, session.cluster, session.kube, session.chaos(hooks), prometheus=prometheus)
        if args.dry_run:
            return dry_run(game)
        live = not args.no_live and sys.stdout.isatty() and Keys.available()
        if live:
            with Keys(game.on_key):
                result = game.run(LiveView())
        else:
            result = game.run(LineView())
    report(result, args.report_dir)
    return result_exit_code(result)


def dry_run(game: GameDay) -> int:
    """Print the plan; deploy nothing, inject nothing, start no load. A system that is already there (a
    namespace of its own, no ``deploy:``) has each fault's targets resolved now; one the run would deploy
    has none yet, and its faults are listed with their selectors. The targets shown are those a run made now
    would pick; a real run picks afresh when each fault starts (pods come and go), as does a resumed one."""
    file = game.file
    resolvable = file.namespace != "auto" and file.deploy is None
    where = file.namespace if file.namespace != "auto" else "a fresh namespace per run"
    print(f"plan of {file.name} ({file.path}), in {where}:")
    print(f"  load: {dict(file.load)}")
    if not resolvable:
        print("  (the run deploys the system first, so no target exists yet: nothing is deployed in a dry run)")
    for index, fault in sorted(enumerate(file.faults), key=lambda item: item[1].at):
        hold = "until recovered" if fault.until_recovered else f"for {fault.duration:g} s" if fault.duration else "once"
        if resolvable:
            with planned(file, index, game.chaos) as record:  # a refusal is located in the file, with its fix
                print(f"  at {fault.at:g} s, {hold}: {fault.kind} would hit {', '.join(record.targets)}")
        else:
            shown = ", ".join(f"{k}={v}" for k, v in fault.options.items() if k != "namespace")
            print(f"  at {fault.at:g} s, {hold}: {fault.kind} ({shown})")
    for stop in file.stop_conditions:
        print(f"  stop condition: {stop.name}")
    for objective in file.objectives:
        print(f"  objective: {objective}")
    print("dry run: nothing was deployed or injected")
    return 0


def report(result: ExperimentResult, directory: Path) -> None:
    journal, html = write_reports([result], directory)
    junit = write_junit([result], directory / "chaoskit-junit.xml")
    print(result.headline())
    print(f"reports: {html}, {journal}, {junit}")
