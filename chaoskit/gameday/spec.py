"""Experiment files: a ``*.chaos.yaml`` turned into checked, frozen objects, or refused with every problem located.

A file goes through three passes, each on what the one before left clean, and
every problem any of them finds is reported (one line each, in file order) as
``{file}:{line}: {field}: {problem}; {fix}`` in one :class:`ExperimentFileError`:

1. **YAML to plain data** (:mod:`chaoskit.gameday.document`), keeping a map from each field's path
   (``faults[0].duration``) to the line it is written on, read from the nodes
   ``yaml.compose`` gives. This pass also refuses what PyYAML would let pass
   silently: a key written twice (PyYAML keeps the last), a key that is not
   text, a number that is not finite.
2. **The JSON Schema** (:mod:`chaoskit.gameday.explain`; draft 2020-12) that editors use too: shape, types and
   ranges. jsonschema's errors are translated into the one-line form, each fix
   built from the schema's own ``examples``, so the schema is the one place a
   field is described.
3. **What no schema can say** (:mod:`chaoskit.gameday.semantics`): each fault's options against the signature of
   the :class:`~chaoskit.chaos.Chaos` method of its kind (the source of truth
   for which options a fault takes and needs), then its spec dataclass built;
   the load, the objectives and the stop conditions built by their own
   classes, whose :class:`~chaoskit.errors.SpecError` becomes a located one;
   times against the load's run time; files that must exist.

Where the schema lives: the canonical copy is the package's own
(``chaoskit/gameday/chaoskit-experiment.schema.json``, package data), since the
loader needs it wherever chaoskit is installed, editable or not; the
repository publishes a byte-identical copy at
``schema/chaoskit-experiment.schema.json`` for editors to point at, and a unit
test keeps the two the same. The schema is written by hand, not generated:
its titles, descriptions and examples are documentation. The parts of it that
must agree with code (each fault kind's options and the ones it needs, the
load's fields) are checked against the code by unit tests.

``${namespace}`` stands for the run's namespace everywhere: in manifests and
PromQL queries, and as the namespace of faults and workloads that did not name
one; under ``namespace: auto`` it stays until the run knows the name
(:meth:`ExperimentFile.with_namespace` fills it in).
``${node_port}`` stands for the NodePort the run gives a deployed system, in
manifests and in ``load.host``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from chaoskit.errors import SpecError
from chaoskit.faults import Safety
from chaoskit.gameday.document import Document
from chaoskit.gameday.explain import schema, schema_pass
from chaoskit.gameday.model import (
    AUTO,
    FAULT_KINDS,
    FAULT_SPECS,
    MAX_FILE_BYTES,
    SCHEMA_FILE,
    SUFFIX,
    UNTIL_RECOVERED,
    ClusterChoice,
    Deploy,
    ExperimentFile,
    ExperimentFileError,
    FaultOptions,
    Problem,
    SteadyState,
    TimelineFault,
    fault_options,
    fill_placeholders,
    placeholders,
)
from chaoskit.gameday.semantics import Semantics
from chaoskit.gameday.words import read_duration


def load_experiment(path: Path) -> ExperimentFile:
    """Read and check the experiment file at ``path``; raise :class:`ExperimentFileError` naming every problem.

    Paths in the file (images, manifests, a locustfile) are relative to the file's directory.
    """
    try:
        size = Path(path).stat().st_size
        if size > MAX_FILE_BYTES:  # judged before a byte is parsed: a huge file is refused at once
            fix = f"an experiment file is a few KiB; keep it under {MAX_FILE_BYTES // 1024} KiB"
            problem = f"is {size / 1048576:.1f} MiB, too big to be an experiment file"
            raise ExperimentFileError([Problem(str(path), 0, "(file)", problem, fix)])
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        fix = "give the path of a readable UTF-8 experiment file, such as experiments/web.chaos.yaml"
        raise ExperimentFileError([Problem(str(path), 0, "(file)", f"cannot be read ({reason})", fix)]) from None
    return parse_experiment(text, str(path))


def parse_experiment(text: str, source: str) -> ExperimentFile:
    """Check the experiment written in ``text``; ``source`` names it in messages and is where relative paths
    start from (its directory)."""
    if len(text) > MAX_FILE_BYTES:
        fix = f"an experiment file is a few KiB; keep it under {MAX_FILE_BYTES // 1024} KiB"
        raise ExperimentFileError([Problem(source, 0, "(file)", f"is {len(text)} characters, too big", fix)])
    doc = Document(source, text)
    data = doc.plain()
    if data is not None:
        schema_pass(doc, data)
        if isinstance(data, dict):
            built = Semantics(doc, data).build()
            if not doc.found:
                assert built is not None
                return built
    raise ExperimentFileError(doc.problems())


def check_fault(kind: str, arguments: Mapping[str, object], safety: Safety) -> None:
    """Build a fault's spec from its arguments and judge its namespace by ``safety``, as its Chaos method would,
    before anything touches the cluster (``chaoskit inject``): raises the spec's own SpecError or SafetyError."""
    spec_class = FAULT_SPECS[kind]
    fields = {f.name for f in dataclasses.fields(spec_class)}
    spec_class(**{k: v for k, v in arguments.items() if k in fields})
    namespace = arguments.get("namespace")
    if isinstance(namespace, str):
        safety.check_namespace(namespace)


def parse_duration(value: object, *, allow_zero: bool = False) -> float:
    """Seconds in a duration as a file writes it: a number of seconds, or a string such as ``30s``, ``1m30s``,
    ``500ms`` or ``2m``. Zero (unless ``allow_zero``), negative and anything else raise SpecError."""
    seconds, problem, fix = read_duration(value, allow_zero=allow_zero)
    if seconds is None:
        raise SpecError(f"{problem}; {fix}")
    return seconds


__all__ = [
    "AUTO",
    "FAULT_KINDS",
    "MAX_FILE_BYTES",
    "SCHEMA_FILE",
    "SUFFIX",
    "UNTIL_RECOVERED",
    "ClusterChoice",
    "Deploy",
    "ExperimentFile",
    "ExperimentFileError",
    "FaultOptions",
    "Problem",
    "SteadyState",
    "TimelineFault",
    "check_fault",
    "fault_options",
    "fill_placeholders",
    "load_experiment",
    "parse_duration",
    "parse_experiment",
    "placeholders",
    "schema",
]
