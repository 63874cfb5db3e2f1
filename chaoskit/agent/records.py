"""The ``faults.chaoskit.io`` CustomResourceDefinition: what a fault record may hold.

Shared by the runner (which writes records, and installs the definition on kind) and the cluster's agent
installation (which installs it elsewhere), from the same step types the agent validates
(:mod:`.actions`). Standard library only, like the rest of the agent's package.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from chaoskit.agent import actions
from chaoskit.agent.injector import GROUP, PLURAL, VERSION

MAX_UNDO_TEXT = 262144
"""The longest undo data (JSON) a record may hold, in the schema and when a runner reads it back."""
DIGEST = "chaoskit.io/schema-digest"
"""On the CRD: a digest of its definition, so a runner with another version of it applies its own."""


def crd() -> dict[str, Any]:
    """The ``faults.chaoskit.io`` CustomResourceDefinition: what a record may hold, checked by the API server
    as well (the agent validates every step again, whoever wrote it)."""
    step = {
        "type": "object",
        "required": ["op"],
        "properties": {
            "op": {"type": "string", "enum": list(actions.OPS)},
            "pid": {"type": "integer", "minimum": 1, "maximum": actions.PID_MAX},
            "inode": {"type": "integer", "minimum": 1},
            "pidNamespace": {"type": "integer", "minimum": 1},
            "table": {"type": "string", "enum": list(actions.TABLES)},
            "families": {"type": "array", "items": {"type": "string", "enum": list(actions.FAMILIES)}},
            "comment": {"type": "string", "pattern": actions.COMMENT.pattern, "maxLength": 100},
            "handle": {"type": "string", "pattern": actions.HANDLE.pattern},
            "uid": {"type": "string", "pattern": actions.UID.pattern},
            "path": {"type": "string", "maxLength": 1024},
            "file": {"type": "string", "pattern": actions.FILL_FILE.pattern, "maxLength": 80},
        },
    }
    steps = {"type": "array", "maxItems": actions.MAX_STEPS, "items": step}
    spec = {
        "type": "object",
        "required": ["faultId", "kind", "ownerLease", "nodes"],
        "properties": {
            "faultId": {"type": "string", "maxLength": 253},
            "kind": {"type": "string", "maxLength": 63},
            "ownerLease": {"type": "string", "maxLength": 253},
            "owner": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "undo": {"type": "string", "maxLength": MAX_UNDO_TEXT, "description": "the fault kind's undo data (JSON)"},
            "namespaces": {"type": "array", "items": {"type": "string", "maxLength": 63}},
            "pods": {"type": "array", "items": {"type": "string", "maxLength": 253}},
            "allowControlPlane": {"type": "boolean"},
            "undoRequested": {"type": "string"},
            "nodes": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "properties": {"undo": steps, "inject": steps},
                },
            },
        },
    }
    status = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    printer = [
        {"name": "Kind", "type": "string", "jsonPath": ".spec.kind"},
        {"name": "Owner", "type": "string", "jsonPath": ".spec.ownerLease"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    definition: dict[str, Any] = {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "fault", "kind": "Fault", "categories": ["chaoskit"]},
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": printer,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {"spec": spec, "status": status},
                    }
                },
            }
        ],
    }
    digest = hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()[:16]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/managed-by": "chaoskit"},
            "annotations": {DIGEST: digest},
        },
        "spec": definition,
    }
