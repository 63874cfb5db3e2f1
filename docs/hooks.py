"""MkDocs hook: the fault reference's table, generated from the fault catalog at build time."""

from __future__ import annotations

from typing import Any

MARKER = "<!-- fault-catalog -->"


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    if MARKER not in markdown:
        return markdown
    from chaoskit.faults.catalog import CATALOG

    rows = ["| kind (files, `chaoskit inject`) | `Chaos` method | spec | what it models |", "|---|---|---|---|"]
    for kind in CATALOG:
        rows.append(f"| `{kind.name}` | `chaos.{kind.method}(...)` | `{kind.spec.__name__}` | {kind.models} |")
    return markdown.replace(MARKER, "\n".join(rows))
