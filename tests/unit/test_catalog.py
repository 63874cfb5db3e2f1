"""The fault catalog is the one list of fault kinds: everything that lists them agrees with it."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil

import chaoskit.faults
from chaoskit import parallel
from chaoskit.chaos import Chaos
from chaoskit.faults.base import Fault
from chaoskit.faults.catalog import CATALOG, FAULT_CLASSES, KINDS, LEGACY_NAMES
from chaoskit.gameday import inject
from chaoskit.gameday.spec import FAULT_KINDS


def concrete_faults() -> set[type[Fault]]:
    """Every fault class with a kind in chaoskit/faults/, found by reading the package, not the catalog."""
    found = set()
    for module in pkgutil.iter_modules(chaoskit.faults.__path__):
        loaded = importlib.import_module(f"chaoskit.faults.{module.name}")
        for _, value in inspect.getmembers(loaded, inspect.isclass):
            if issubclass(value, Fault) and "kind" in value.__dict__ and value.__module__ == loaded.__name__:
                found.add(value)
    return found


def test_every_fault_class_is_in_the_catalog_once_under_its_own_name():
    assert {k.fault for k in CATALOG} == concrete_faults()
    assert len(KINDS) == len(CATALOG)
    for kind in CATALOG:
        assert kind.fault.kind == kind.name, kind


def test_each_chaos_method_takes_its_specs_fields_and_max_share_and_builds_its_fault():
    for kind in CATALOG:
        method = getattr(Chaos, kind.method)
        parameters = set(inspect.signature(method).parameters) - {"self"}
        fields = {f.name for f in dataclasses.fields(kind.spec)}
        assert parameters == fields | {"max_share"}, (kind.name, parameters ^ (fields | {"max_share"}))
        source = inspect.getsource(method)
        assert f"{kind.fault.__name__}(" in source and f"{kind.spec.__name__}(" in source, kind.name


def test_the_files_the_command_line_and_the_scheduler_read_the_kinds_from_the_catalog():
    assert dict(FAULT_KINDS) == {k.name: k.method for k in CATALOG}
    assert set(parallel.NODE_WIDE_METHODS) == {k.method for k in CATALOG if k.fault.node_wide}
    assert inject.FAULT_KINDS is FAULT_KINDS


def test_a_name_the_ledger_held_before_each_kind_had_one_still_finds_its_kind():
    for old, new in LEGACY_NAMES.items():
        assert old not in KINDS and FAULT_CLASSES[old] is KINDS[new].fault
    assert set(FAULT_CLASSES) == set(KINDS) | set(LEGACY_NAMES)
