"""The fix chaoskit applies to the Kubernetes source before building it, on a stand-in source tree."""

from pathlib import Path

import pytest

from chaoskit.errors import ProvisionError
from chaoskit.provision.kubernetes import _fix_noexecute_taint_queue

CONTROLLER = "pkg/controller/nodelifecycle/node_lifecycle_controller.go"

SOURCE = """package nodelifecycle

func (nc *Controller) markNodeForTainting(node *v1.Node, status v1.ConditionStatus) bool {
\tif status == v1.ConditionFalse {
\t\tnc.zoneNoExecuteTainter[utilnode.GetZoneKey(node)].SetRemove(node.Name)
\t}
\tif status == v1.ConditionUnknown {
\t\tnc.zoneNoExecuteTainter[utilnode.GetZoneKey(node)].SetRemove(node.Name)
\t}
\treturn nc.zoneNoExecuteTainter[utilnode.GetZoneKey(node)].Add(node.Name, string(node.UID))
}

func (nc *Controller) other(node *v1.Node) {
\tnc.zonePodEvictor[utilnode.GetZoneKey(node)].SetRemove(node.Name)
}
"""


def tree(tmp_path: Path, text: str) -> Path:
    path = tmp_path / CONTROLLER
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return path


def test_the_taint_queue_drops_old_entries_in_mark_node_for_tainting_only(tmp_path: Path):
    path = tree(tmp_path, SOURCE)
    _fix_noexecute_taint_queue(tmp_path)
    fixed = path.read_text()
    marking, other = fixed.split("func (nc *Controller) other")
    assert marking.count("].Remove(node.Name)") == 2 and "SetRemove" not in marking
    assert "zonePodEvictor[utilnode.GetZoneKey(node)].SetRemove(node.Name)" in other


def test_an_unexpected_source_stops_the_build(tmp_path: Path):
    tree(tmp_path, SOURCE.replace("].SetRemove(node.Name)\n\t}\n\tif", "].Remove(node.Name)\n\t}\n\tif", 1))
    with pytest.raises(ProvisionError, match="markNodeForTainting does not call SetRemove twice"):
        _fix_noexecute_taint_queue(tmp_path)
